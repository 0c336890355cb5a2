"""A job's real entry point as SageMaker starts it, for the tests of both job environments.

``python -m <package> ...`` with the test's interpreter, from the repository root, in the
environment the test gives (its SM_* channels and directories), output captured.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_entry_point(
    package: str, *args: str, env: Mapping[str, str], timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <package> <args>``; the exit status is the caller's to check."""
    return subprocess.run(
        [sys.executable, "-m", package, *args],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
