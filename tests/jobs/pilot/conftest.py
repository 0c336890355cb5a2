"""Shared helpers: process checks and the pilot command (the SmolLM2 fixture is in tests/jobs/conftest.py)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


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


def pilot_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.pilot", *args]
