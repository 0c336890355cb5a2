"""Running the quantize job as SageMaker does, ``python -m jobs.quantize`` in its own process,
and checking that none of its processes outlive it (the distributed tests, CPU and CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT_S = 600


def processes_with(marker: str) -> list[int]:
    """Processes whose environment mentions ``marker`` (a run's unique output path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def run_entrypoint(tmp_path: Path, name: str, model: Path, calibration: Path, *args: str, **env: str):
    """``python -m jobs.quantize`` in a subprocess, as SageMaker starts it; returns
    (exit code, output dir, failure text or None, seconds). Without CUDA the GPU probe looks
    only where the run points it (an empty /dev, no nvidia-smi) and each rank gets one thread."""
    out, failure_dir = tmp_path / name / "model", tmp_path / name / "output"
    job_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SM_CHANNEL_MODEL": str(model),
        "SM_CHANNEL_CALIBRATION": str(calibration),
        "SM_MODEL_DIR": str(out),
        "SM_OUTPUT_DIR": str(failure_dir),
        "SM_INPUT_CONFIG_DIR": str(tmp_path / name / "config"),
    }
    if not torch.cuda.is_available():
        job_env |= {
            "OMP_NUM_THREADS": "1",
            "LLMQ_DEV_DIR": str(tmp_path / "no-dev"),
            "LLMQ_NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"),
        }
    job_env |= env
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.quantize", *args],
        cwd=REPO,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - started
    failure = failure_dir / "failure"
    if done.returncode:
        print(done.stdout[-4000:], done.stderr[-8000:])
    assert not processes_with(str(out)), "a rank outlived the job"
    return done.returncode, out, failure.read_text() if failure.is_file() else None, seconds


def run_variants(
    tmp_path: Path, model: Path, calibration: Path, args: tuple[str, ...], variants: dict[str, tuple[str, ...]]
) -> dict[str, Path]:
    """One successful run of the entrypoint per variant (``args`` plus the variant's own arguments,
    each in its own folder); prints each one's time and returns each one's output directory."""
    out = {}
    for name, extra in variants.items():
        code, out[name], failure, seconds = run_entrypoint(tmp_path, name, model, calibration, *args, *extra)
        assert code == 0, failure
        print(f"{name}: {seconds:.1f} s")
    return out
