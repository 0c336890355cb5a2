"""Put one Lambda function's modules on the import path as its asset has them (stacks/python_function.py),
and hand its handler the context object Lambda would.

A function's asset holds its own folder and lambda/shared/ side by side, so its modules import each
other by bare name; tests that import them need both folders on ``sys.path``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_function_path(name: str) -> Path:
    """lambda/shared/ and lambda/<name>/ on ``sys.path`` (once); returns the function's folder."""
    folder = ROOT / "lambda" / name
    for path in (ROOT / "lambda" / "shared", folder):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return folder


@dataclass
class LambdaContext:
    """The parts of Lambda's context object the handlers and Powertools' logger read."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = "test-request"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000
