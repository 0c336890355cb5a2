"""The data capture of a run's endpoint: is it on, where its recent files are, the prompts in them.

Shared by the input-drift function (profiles every recent prompt) and the quality sampler (sends a
few recent prompts to both variants during a canary). SageMaker writes one prefix per variant and
UTC hour under the run's capture destination (contracts/artifact_layout.py ``capture_hour_key``);
each line's request is read by contracts/data_capture.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from contracts import artifact_layout
from contracts.data_capture import CapturedPrompts


def capture_is_ours(described: dict[str, Any], bucket: str, model: str, run: str) -> bool:
    """Whether the endpoint captures, into this run's capture prefix (DescribeEndpoint's DataCaptureConfig)."""
    capture = described.get("DataCaptureConfig") or {}
    expected = f"s3://{bucket}/{artifact_layout.capture_key(model, run)}"
    return bool(capture.get("EnableCapture")) and capture.get("DestinationS3Uri", "").rstrip("/") == expected.rstrip(
        "/"
    )


def hour_prefixes(model: str, run: str, endpoint: str, variants: list[str], *, now: datetime, hours: int) -> list[str]:
    """The hourly capture prefixes of every variant for the last ``hours`` hours (UTC), newest first."""
    start = now.replace(minute=0, second=0, microsecond=0)
    return [
        artifact_layout.capture_hour_key(model, run, endpoint, variant, start - timedelta(hours=h))
        for h in range(hours + 1)
        for variant in variants
    ]


def capture_keys(s3: Any, bucket: str, prefixes: list[str], max_files: int) -> list[str]:
    """Capture files under the hourly prefixes, newest hour first, at most ``max_files``."""
    keys: list[str] = []
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                keys.append(item["Key"])
                if len(keys) >= max_files:
                    return keys
    return keys


def read_prompts(s3: Any, bucket: str, keys: list[str]) -> CapturedPrompts:
    """Every readable prompt of the files, in order (unreadable lines counted)."""
    captured = CapturedPrompts()
    for key in keys:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
        captured.add_lines(text.splitlines())
    return captured
