"""Input drift: the prompts an endpoint received lately, compared with its model's calibration set.

For each monitored endpoint, on a schedule:

1. DescribeEndpoint and its tags: only an endpoint in phase ``canary`` or ``promoted`` whose data
   capture is on and writes under its run's capture prefix (contracts/artifact_layout.py) is read;
   anything else is reported as skipped, with the reason.
2. The reference: the calibration prompts' profile in the run's manifest (``calibration.profile``,
   contracts/manifest.py), written by the quantize job.
3. The observed set: the capture files of every variant of the endpoint for the last
   ``lookback_hours`` hours (SageMaker's hourly prefixes, at most ``max_files`` files), each line's
   prompt extracted (contracts/data_capture.py) and profiled as plain text.
4. ``drift()`` (contracts/prompt_drift.py); when judged (enough prompts on both sides) both
   statistics go to CloudWatch as contracts/input_drift.py names them. Unjudged: nothing is
   published (the alarms treat missing data as not breaching).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from capture_files import capture_is_ours, capture_keys, hour_prefixes, read_prompts

from contracts import artifact_layout, input_drift, prompt_drift
from contracts.endpoint_tags import PHASE_CANARY, PHASE_PROMOTED, TAG_MODEL, TAG_PHASE, TAG_RUN
from contracts.manifest import CALIBRATION_PROFILE_FIELD, lookup
from contracts.prompt_records import plain_text

WATCHED_PHASES = (PHASE_CANARY, PHASE_PROMOTED)


@dataclass
class EndpointCheck:
    """What one check of one endpoint found (logged and returned by the handler)."""

    endpoint: str
    status: str  # "published", "not-judged" or "skipped"
    reason: str = ""
    model_name: str | None = None
    run_id: str | None = None
    files: int = 0
    lines: int = 0
    unreadable: int = 0
    score: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _tags(sagemaker: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}


def reference_profile(s3: Any, bucket: str, model: str, run: str) -> prompt_drift.PromptProfile | None:
    """The calibration profile the quantize job put in the run's manifest (None: none recorded)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=artifact_layout.manifest_key(model, run))["Body"].read()
    except ClientError as exc:
        # Without s3:ListBucket on the manifest's prefix a missing key is AccessDenied, not NoSuchKey.
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "AccessDenied", "404", "403"):
            return None
        raise
    found, data = lookup(json.loads(body), CALIBRATION_PROFILE_FIELD)
    return prompt_drift.PromptProfile.from_json(data) if found and data else None


def _skip(endpoint: str, reason: str, **known: Any) -> EndpointCheck:
    return EndpointCheck(endpoint=endpoint, status="skipped", reason=reason, **known)


def check_endpoint(
    endpoint: str, *, sagemaker: Any, s3: Any, cloudwatch: Any, bucket: str, now: datetime, hours: int, max_files: int
) -> EndpointCheck:
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:  # a monitored endpoint that does not exist (yet): nothing to check
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        return _skip(endpoint, f"endpoint not found: {exc.response['Error'].get('Message', '')}")
    tags = _tags(sagemaker, described["EndpointArn"])
    phase, model, run = tags.get(TAG_PHASE), tags.get(TAG_MODEL), tags.get(TAG_RUN)
    if phase not in WATCHED_PHASES or not model or not run:
        return _skip(endpoint, f"phase {phase!r}: drift is checked in {', '.join(WATCHED_PHASES)} only")
    known = {"model_name": model, "run_id": run}
    if not capture_is_ours(described, bucket, model, run):
        expected = f"s3://{bucket}/{artifact_layout.capture_key(model, run)}"
        return _skip(endpoint, f"data capture is not on, or not writing to {expected}", **known)
    reference = reference_profile(s3, bucket, model, run)
    if reference is None:
        return _skip(endpoint, "the run's manifest has no calibration profile (data-free algorithm?)", **known)
    variants = [v["VariantName"] for v in described.get("ProductionVariants", [])]
    keys = capture_keys(s3, bucket, hour_prefixes(model, run, endpoint, variants, now=now, hours=hours), max_files)
    captured = read_prompts(s3, bucket, keys)
    score = prompt_drift.drift(reference, prompt_drift.profile(plain_text(r) for r in captured.records))
    result = EndpointCheck(
        endpoint=endpoint,
        status="published" if score.judged else "not-judged",
        files=len(keys),
        lines=captured.lines,
        unreadable=captured.unreadable,
        score=score.to_json(),
        **known,
    )
    if score.judged:
        publish(cloudwatch, endpoint, score, now)
    else:
        result.reason = f"fewer than {prompt_drift.MIN_PROMPTS} prompts on one side"
    return result


def metric_data(endpoint: str, score: prompt_drift.DriftScore, now: datetime) -> list[dict[str, Any]]:
    """PutMetricData's MetricData: both statistics, named as contracts/input_drift.py says."""
    values = {input_drift.LENGTH_KS_METRIC: score.length_ks, input_drift.WORD_JSD_METRIC: score.token_jsd}
    return [
        {
            "MetricName": name,
            "Dimensions": input_drift.dimensions(endpoint),
            "Timestamp": now,
            "Value": round(value, 6),
            "Unit": input_drift.UNIT,
        }
        for name, value in values.items()
    ]


def publish(cloudwatch: Any, endpoint: str, score: prompt_drift.DriftScore, now: datetime) -> None:
    cloudwatch.put_metric_data(Namespace=input_drift.NAMESPACE, MetricData=metric_data(endpoint, score, now))
