"""Put one Lambda function's modules on the import path as its asset has them (stacks/python_function.py).

A function's asset holds its own folder and lambda/shared/ side by side, so its modules import each
other by bare name; tests that import them need both folders on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_function_path(name: str) -> Path:
    """lambda/shared/ and lambda/<name>/ on ``sys.path`` (once); returns the function's folder."""
    folder = ROOT / "lambda" / name
    for path in (ROOT / "lambda" / "shared", folder):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return folder
