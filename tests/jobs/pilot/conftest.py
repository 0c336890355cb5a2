"""Shared fixtures: the real SmolLM2-135M (converted once per machine) and process checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
QUANTIZE_PYTHON = ROOT / ".venv-quantize" / "bin" / "python"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (e.g. a test's tmp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if text in cmd and "zombie" not in state:
            found.append(cmd.strip())
    return found


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


def pilot_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.pilot", *args]
