"""Turn benchmarks/gpu_scale.sh's JSON lines into benchmarks/results/ and a Markdown table.

    python3 benchmarks/gpu_ranks_table.py --machine "8x NVIDIA H200 ..." \\
        --out benchmarks/results/gpu-ranks-h200x8.json RUN_DIR/gpu-ranks-gptq.jsonl RUN_DIR/gpu-ranks-awq.jsonl

The table compares each run with the one-rank run of the same algorithm: wall time, the speed-up,
the job's calibration seconds, each GPU's peak (nvidia-smi, the largest over the GPUs), torch's
peak per rank (the manifest, the largest rank), and host memory three ways (benchmarks/measure.py).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

GIB = 2**30


def load(paths: list[Path]) -> list[dict]:
    runs = []
    for path in paths:
        runs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return runs


def ranks_of(run: dict) -> int:
    distributed = run.get("manifest_distributed") or {}
    if distributed.get("world_size"):
        return int(distributed["world_size"])
    match = re.search(r"-(\d+)gpu$", run["label"])
    return int(match.group(1)) if match else 1


def row(run: dict, baseline: dict | None) -> str:
    ranks = ranks_of(run)
    metrics = run.get("manifest_metrics") or {}
    per_rank = (run.get("manifest_distributed") or {}).get("ranks") or []
    torch_peak = max((r.get("peak_gpu_memory_bytes") or 0 for r in per_rank), default=0) / GIB
    per_gpu = run.get("peak_gpu_mem_gib_per_gpu") or []
    speedup = f"{baseline['wall_seconds'] / run['wall_seconds']:.2f}" if baseline and run["wall_seconds"] else "-"
    return (
        f"| {run['label']} | {ranks} | {run['exit_code']} | {run['wall_seconds']} | {speedup} "
        f"| {metrics.get('calibrate_seconds', '-')} | {max(per_gpu, default=0):.2f} | {torch_peak:.2f} "
        f"| {run.get('peak_host_pss_gib', '-')} | {run.get('peak_host_used_gib', '-')} | {run['peak_host_rss_gib']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jsonl", type=Path, nargs="+")
    parser.add_argument("--machine", required=True, help="GPUs, driver, CPUs, host memory, as nvidia-smi and free say")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write under benchmarks/results/")
    args = parser.parse_args()
    runs = load(args.jsonl)
    what = "benchmarks/gpu_scale.sh: the quantize job on 1 and N GPUs"
    args.out.write_text(json.dumps({"what": what, "machine": args.machine, "runs": runs}, indent=2) + "\n")
    print(
        "| run | ranks | exit | wall s | speed-up | calibrate s | peak GPU GiB (largest GPU) "
        "| torch peak GiB (largest rank) | host PSS GiB | host used GiB | largest process RSS GiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        algorithm = run["label"].split("-")[1] if run["label"].startswith("job-") else None
        baseline = next((r for r in runs if r["label"] == f"job-{algorithm}-1gpu"), None)
        print(row(run, baseline if run is not baseline else None))


if __name__ == "__main__":
    main()
