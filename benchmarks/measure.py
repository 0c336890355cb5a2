"""Run one command and report its wall time, peak host memory and peak GPU memory.

- wall time around the process;
- ``peak_host_rss_gib``: getrusage(RUSAGE_CHILDREN) of this wrapper, the largest single
  descendant's resident-set peak (with several ranks: the largest rank, not their sum);
- ``peak_host_pss_gib``: the largest sum, sampled every 0.5 s, of the proportional set size of the
  command's process tree (shared pages split among the processes sharing them, so the model the
  ranks share through /dev/shm counts once): what the job's processes hold together;
- ``peak_host_used_gib``: host memory in use (MemTotal - MemAvailable; /dev/shm counts) at its
  peak, minus what was in use before the command started;
- ``peak_gpu_mem_gib``: nvidia-smi's memory.used sampled every 100 ms, summed over the GPUs,
  minus idle; ``peak_gpu_mem_gib_per_gpu``: the same per GPU (index order), each GPU's own peak.

``--manifest PATH``: after the command, the job's manifest ``distributed`` record (world size,
each rank's torch peak GPU memory and resident-set peak) and ``metrics`` are added.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

GIB = 2**30


def _gpu_used_mib() -> list[int] | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    used = {}
    for line in out.stdout.splitlines():
        index, _, value = line.partition(",")
        if index.strip().isdigit() and value.strip().isdigit():
            used[int(index)] = int(value)
    return [used[i] for i in sorted(used)] or None


def _host_used_kib() -> int:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def _tree_pss_kib(root: int) -> int:
    """The summed PSS of ``root`` and every descendant (0 for processes that vanish meanwhile)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class Sampler:
    """Peaks of GPU memory (every 100 ms) and host memory (every 0.5 s) while a command runs."""

    def __init__(self) -> None:
        self.gpu_idle = _gpu_used_mib()
        self.gpu_peak = list(self.gpu_idle or [])
        self.host_idle = _host_used_kib()
        self.host_peak = self.host_idle
        self.pss_peak = 0
        self.root: int | None = None
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=target, daemon=True) for target in (self._gpu, self._host)]

    def _gpu(self) -> None:
        while not self.stop.is_set():
            used = _gpu_used_mib()
            if used is not None and len(used) == len(self.gpu_peak):
                self.gpu_peak = [max(a, b) for a, b in zip(self.gpu_peak, used, strict=True)]
            self.stop.wait(0.1)

    def _host(self) -> None:
        while not self.stop.is_set():
            self.host_peak = max(self.host_peak, _host_used_kib())
            if self.root is not None:
                self.pss_peak = max(self.pss_peak, _tree_pss_kib(self.root))
            self.stop.wait(0.5)

    def __enter__(self) -> Sampler:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def figures(self) -> dict[str, object]:
        per_gpu = None
        if self.gpu_idle is not None:
            per_gpu = [round((peak - idle) / 1024, 2) for peak, idle in zip(self.gpu_peak, self.gpu_idle, strict=True)]
        return {
            "peak_host_pss_gib": round(self.pss_peak / 2**20, 2),
            "peak_host_used_gib": round((self.host_peak - self.host_idle) / 2**20, 2),
            "peak_gpu_mem_gib": None if per_gpu is None else round(sum(per_gpu), 2),
            "peak_gpu_mem_gib_per_gpu": per_gpu,
        }


def manifest_figures(path: Path | None) -> dict[str, object]:
    if path is None or not path.is_file():
        return {}
    manifest = json.loads(path.read_text())
    return {"manifest_distributed": manifest.get("distributed"), "manifest_metrics": manifest.get("metrics")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to append the figures to")
    parser.add_argument("--manifest", type=Path, help="the job's manifest.json, read after the command")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    with Sampler() as sampler:
        start = time.perf_counter()
        child = subprocess.Popen(command)
        sampler.root = child.pid
        code = child.wait()
        wall = time.perf_counter() - start
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    record = {
        "label": args.label,
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "peak_host_rss_gib": round(rss_kib / 2**20, 2),
        **sampler.figures(),
        "command": command,
        **manifest_figures(args.manifest),
    }
    with args.out.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if not k.startswith("manifest_")}), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
