"""The SageMaker failure-file conventions (one clear reason, where SageMaker reads it).

- A **training job** (the quantize job) writes ``/opt/ml/output/failure``: SageMaker shows its
  content as DescribeTrainingJob's ``FailureReason`` (at most 1024 characters).
- A **processing job** (the evaluate job in the pipeline) writes ``/opt/ml/output/message``:
  DescribeProcessingJob's ``ExitMessage`` holds its first 1 KB, which must be UTF-8 (a file
  that is not fails the job with a ClientError). A processing container is recognised by
  ``/opt/ml/config/processingjobconfig.json``, which SageMaker Processing provides and a
  training job does not (``LLMQ_PROCESSING_CONFIG_DIR`` moves /opt/ml/config, for tests).

Local runs (pilot, tests) read the same files. The pipeline's error path quotes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FAILURE_FILE = "failure"
MESSAGE_FILE = "message"
PROCESSING_JOB_CONFIG = "processingjobconfig.json"
# DescribeTrainingJob's FailureReason holds at most 1024 characters; DescribeProcessingJob's
# ExitMessage the first 1 KB of the message file. Keeping both under 1024 UTF-8 bytes fits both.
MAX_REASON_CHARS = 1024
MAX_REASON_BYTES = 1024


class JobFailureError(Exception):
    """A failure whose message is meant for the person who started the job (bad input, refusal)."""


def output_dir() -> Path:
    return Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))


def is_processing_job(env: Mapping[str, str] | None = None) -> bool:
    """True inside a SageMaker Processing container (its job config file is present)."""
    env = os.environ if env is None else env
    config_dir = Path(env.get("LLMQ_PROCESSING_CONFIG_DIR", "/opt/ml/config"))
    return (config_dir / PROCESSING_JOB_CONFIG).is_file()


def one_line(reason: str) -> str:
    """``reason`` on one line, cut to what SageMaker keeps (UTF-8 safe: no split character)."""
    text = " ".join(reason.split())
    if len(text) > MAX_REASON_CHARS or len(text.encode("utf-8")) > MAX_REASON_BYTES:
        budget = MAX_REASON_BYTES - len(b"...")
        text = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")[: MAX_REASON_CHARS - 3] + "..."
    return text


def write_failure(reason: str, directory: Path | None = None, *, processing: bool = False) -> Path:
    """Write ``reason`` (one line) to the file SageMaker reads and return the file's path.

    ``processing=True`` writes ``message`` (processing jobs' ExitMessage) instead of
    ``failure`` (training jobs' FailureReason).
    """
    target_dir = directory if directory is not None else output_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / (MESSAGE_FILE if processing else FAILURE_FILE)
    path.write_text(one_line(reason) + "\n", encoding="utf-8")
    return path
