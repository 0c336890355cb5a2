"""Fixtures for the job tests: real models built offline, calibration sets, a job runner.

The SmolLM2 conversion is cached across runs in ``$LLMQ_CACHE`` (default ~/.cache/llmq): a
fresh machine pays about 20 s once. Torch threads stay at 2: the CPU is shared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Two threads at most (the CPU is shared), and passive waiting: spinning OpenMP threads on an
# oversubscribed machine made forward passes 50-100x slower (docs/quantize.md).
THREADS = int(os.environ.get("LLMQ_TORCH_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after the OpenMP settings above)

from jobs.quantize import artifact, job  # noqa: E402
from jobs.quantize.check import pydoc_texts  # noqa: E402
from jobs.quantize.smollm2 import ensure_smollm2  # noqa: E402
from jobs.quantize.tiny_model import build_tiny_llama  # noqa: E402
from jobs.sagemaker_job.records import write_jsonl  # noqa: E402

torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return ensure_smollm2()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """One decoder layer keeps AWQ's grid search (20 points per mapping) affordable on CPU."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", num_layers=1, tokenizer_dir=smollm2_dir)


@pytest.fixture(scope="session")
def pydoc_calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, _ = pydoc_texts()
    return write_jsonl(tmp_path_factory.mktemp("calibration") / "pydoc.jsonl", texts).parent


@pytest.fixture(scope="session")
def held_out_text() -> str:
    return pydoc_texts()[1]


@dataclass
class JobResult:
    code: int
    output: Path
    failure_dir: Path

    @property
    def failure(self) -> str | None:
        path = self.failure_dir / "failure"
        return path.read_text() if path.is_file() else None

    @property
    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.output / "manifest.json").read_text())
        return manifest

    def finished_artifact_exists(self) -> bool:
        """A finished artifact is a directory holding manifest.json (docs/quantize.md)."""
        return (self.output / "manifest.json").exists() or any(
            (p / "manifest.json").exists() for p in self.staging_dirs()
        )

    def staging_dirs(self) -> list[Path]:
        """Staging directories left behind: inside the output (where the job stages) or beside it."""
        inside = list(self.output.glob(f"{artifact.STAGING_PREFIX}*")) if self.output.is_dir() else []
        return inside + list(self.output.parent.glob(f".{self.output.name}.partial-*"))


RunJob = Callable[..., JobResult]


@pytest.fixture
def run_job(tmp_path: Path) -> RunJob:
    """Run ``jobs.quantize.job.main`` in-process with SageMaker-style environment variables."""

    def _run(
        model: Path,
        *args: str,
        calibration: Path | None = None,
        hyperparameters: dict[str, Any] | None = None,
        output: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> JobResult:
        config_dir = tmp_path / "config"
        config_dir.mkdir(exist_ok=True)
        if hyperparameters is not None:
            (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        out = output if output is not None else tmp_path / "model-out"
        failure_dir = tmp_path / "output"
        job_env = {
            # The GPU probe looks only where a test points it: an empty /dev, no nvidia-smi.
            "LLMQ_DEV_DIR": str(tmp_path / "no-dev"),
            "LLMQ_NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"),
            "SM_CHANNEL_MODEL": str(model),
            "SM_CHANNEL_CALIBRATION": str(calibration if calibration is not None else tmp_path / "no-calibration"),
            "SM_MODEL_DIR": str(out),
            "SM_OUTPUT_DIR": str(failure_dir),
            "SM_INPUT_CONFIG_DIR": str(config_dir),
            **(env or {}),
        }
        code = job.main(list(args), env=job_env)
        return JobResult(code, out, failure_dir)

    return _run
