"""Run one command and report its wall time, peak host RSS and peak GPU memory.

Peak RSS comes from getrusage(RUSAGE_CHILDREN) of this wrapper, so it covers
exactly the one child (and its descendants). Peak GPU memory is sampled from
nvidia-smi every 100 ms as device-wide memory in use minus what was in use
before the child started, the same way for the job and the bare baseline.
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


def _gpu_used_mib() -> int | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    values = [int(v) for v in out.stdout.split() if v.strip().isdigit()]
    return sum(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to append the figures to")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    idle = _gpu_used_mib()
    peak = [idle or 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            used = _gpu_used_mib()
            if used is not None:
                peak[0] = max(peak[0], used)
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    code = subprocess.run(command, check=False).returncode
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    record = {
        "label": args.label,
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "peak_host_rss_gib": round(rss_kib / 2**20, 2),
        "peak_gpu_mem_gib": None if idle is None else round((peak[0] - idle) / 1024, 2),
        "command": command,
    }
    with args.out.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
