"""The SageMaker failure-file convention.

A training job that fails should write one clear reason to ``/opt/ml/output/failure``:
SageMaker shows its content as the job's ``FailureReason`` (truncated to 1024 characters) and
the pipeline's error path quotes it. Local runs (pilot, tests) read the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

FAILURE_FILE = "failure"
# DescribeTrainingJob's FailureReason holds at most 1024 characters.
MAX_REASON_CHARS = 1024


class JobFailureError(Exception):
    """A failure whose message is meant for the person who started the job (bad input, refusal)."""


def output_dir() -> Path:
    return Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))


def write_failure(reason: str, directory: Path | None = None) -> Path:
    """Write ``reason`` (one line, truncated to what SageMaker keeps) and return the file's path."""
    target_dir = directory if directory is not None else output_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    text = " ".join(reason.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 3] + "..."
    path = target_dir / FAILURE_FILE
    path.write_text(text + "\n", encoding="utf-8")
    return path
