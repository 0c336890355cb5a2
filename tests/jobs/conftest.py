"""Fixtures of the job tests that run in the evaluate environment (tests/jobs/quantize has its own)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUANTIZE_PYTHON = ROOT / ".venv-quantize" / "bin" / "python"


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    out = subprocess.run(
        [str(QUANTIZE_PYTHON), "-m", "jobs.quantize.smollm2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return Path(out.stdout.strip().splitlines()[-1])
