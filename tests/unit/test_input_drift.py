"""The input-drift check (lambda/input_drift/drift_check.py) against emulated SageMaker, S3 and CloudWatch,
with capture files shaped as SageMaker writes them."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from contracts import artifact_layout, input_drift
from contracts.prompt_drift import profile
from tests.contracts.test_data_capture import line
from tests.function_path import add_function_path

add_function_path("input_drift")

from capture_files import hour_prefixes  # noqa: E402
from drift_check import check_endpoint  # noqa: E402

BUCKET = "artifacts"
ENDPOINT = "llmq-dev-chat"
MODEL, RUN = "llama-8b", "run-001"
NOW = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
TOPICS = ["invoice", "refund", "shipping", "password", "warranty", "delivery", "discount", "account"]


def questions(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible
    return [
        f"Customer asks about the {rng.choice(TOPICS)} for order {rng.randint(100, 999)}: "
        + " ".join(rng.choice(TOPICS) for _ in range(rng.randint(3, 12)))
        for _ in range(count)
    ]


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        clients = {n: boto3.client(n, region_name="us-east-1") for n in ("sagemaker", "s3", "cloudwatch")}
        clients["s3"].create_bucket(Bucket=BUCKET)
        yield clients


def deploy(aws, *, phase="canary", destination=None, calibration=None):
    sm = aws["sagemaker"]
    sm.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r", PrimaryContainer={"Image": "i"})
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": destination or f"s3://{BUCKET}/{artifact_layout.capture_key(MODEL, RUN)}",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    variants = [
        {"VariantName": name, "ModelName": "m", "InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1}
        for name in ("AllTraffic", "candidate")
    ]
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants, DataCaptureConfig=capture)
    arn = sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="c")["EndpointArn"]
    tags = {"llmq:phase": phase, "llmq:model-name": MODEL, "llmq:run-id": RUN}
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    manifest: dict[str, Any] = {"calibration": {"sha256": "c" * 64}}
    if calibration is not None:
        manifest["calibration"]["profile"] = profile(calibration).to_json()
    aws["s3"].put_object(Bucket=BUCKET, Key=artifact_layout.manifest_key(MODEL, RUN), Body=json.dumps(manifest))


def capture(aws, variant: str, hour: datetime, bodies: list[dict], name: str = "f.jsonl", **kwargs):
    key = artifact_layout.capture_hour_key(MODEL, RUN, ENDPOINT, variant, hour) + name
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body="\n".join(line(b, **kwargs) for b in bodies).encode())


def run(aws, hours=24, max_files=500):
    return check_endpoint(
        ENDPOINT,
        sagemaker=aws["sagemaker"],
        s3=aws["s3"],
        cloudwatch=aws["cloudwatch"],
        bucket=BUCKET,
        now=NOW,
        hours=hours,
        max_files=max_files,
    )


def published(aws):
    stats = {}
    for metric in aws["cloudwatch"].list_metrics(Namespace=input_drift.NAMESPACE)["Metrics"]:
        points = aws["cloudwatch"].get_metric_statistics(
            Namespace=input_drift.NAMESPACE,
            MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"],
            StartTime=NOW - timedelta(hours=1),
            EndTime=NOW + timedelta(hours=1),
            Period=3600,
            Statistics=["Maximum"],
        )["Datapoints"]
        stats[metric["MetricName"]] = points[0]["Maximum"]
    return stats


def test_traffic_like_the_calibration_set_is_judged_and_below_both_thresholds(aws):
    deploy(aws, calibration=questions(1, 200))
    capture(aws, "AllTraffic", NOW, [{"inputs": q} for q in questions(2, 80)])
    chat = [{"messages": [{"role": "user", "content": q}]} for q in questions(3, 40)]
    capture(aws, "candidate", NOW - timedelta(hours=3), chat, encoding="BASE64", content_type="application/x-json")

    result = run(aws)

    assert result.status == "published", result
    assert (result.files, result.lines, result.unreadable) == (2, 120, 0)
    assert result.score["observed_prompts"] == 120 and result.score["drifted"] is False
    stats = published(aws)
    assert set(stats) == set(input_drift.THRESHOLDS)
    for name, value in stats.items():
        assert value < input_drift.THRESHOLDS[name]


def test_other_traffic_is_published_above_the_thresholds(aws):
    deploy(aws, calibration=questions(1, 200))
    other = [f"Écris un poème de {n} vers sur la mer, le vent et les mouettes du port." for n in range(120)]
    capture(aws, "AllTraffic", NOW, [{"inputs": p} for p in other])

    result = run(aws)

    assert result.score["drifted"] is True
    assert published(aws)[input_drift.WORD_JSD_METRIC] > input_drift.THRESHOLDS[input_drift.WORD_JSD_METRIC]


def test_too_few_prompts_publish_nothing(aws):
    deploy(aws, calibration=questions(1, 200))
    capture(aws, "AllTraffic", NOW, [{"inputs": q} for q in questions(2, 20)])

    result = run(aws)

    assert result.status == "not-judged"
    assert aws["cloudwatch"].list_metrics(Namespace=input_drift.NAMESPACE)["Metrics"] == []


@pytest.mark.parametrize("phase", ["evaluating", "rolled-back", "rolling-back"])
def test_only_canary_and_promoted_endpoints_are_read(aws, phase):
    deploy(aws, phase=phase, calibration=questions(1, 200))
    assert run(aws).status == "skipped"


def test_capture_that_writes_elsewhere_is_not_the_runs_and_is_skipped(aws):
    deploy(aws, destination=f"s3://{BUCKET}/team-capture/", calibration=questions(1, 200))
    result = run(aws)
    assert result.status == "skipped" and "not writing to" in result.reason


def test_a_run_without_a_calibration_profile_is_skipped(aws):
    deploy(aws, calibration=None)
    result = run(aws)
    assert result.status == "skipped" and "calibration profile" in result.reason


def test_files_outside_the_lookback_window_are_not_read_and_max_files_bounds_the_work(aws):
    deploy(aws, calibration=questions(1, 200))
    capture(aws, "AllTraffic", NOW - timedelta(hours=30), [{"inputs": q} for q in questions(2, 80)])
    assert run(aws, hours=24).lines == 0
    for i in range(3):
        capture(aws, "AllTraffic", NOW, [{"inputs": q} for q in questions(i, 60)], name=f"{i}.jsonl")
    assert run(aws, max_files=2).files == 2


def test_hour_prefixes_follow_sagemakers_layout_newest_first():
    prefixes = hour_prefixes(MODEL, RUN, ENDPOINT, ["AllTraffic"], now=NOW, hours=1)
    assert prefixes == [
        f"models/{MODEL}/{RUN}/capture/{ENDPOINT}/AllTraffic/2026/12/03/10/",
        f"models/{MODEL}/{RUN}/capture/{ENDPOINT}/AllTraffic/2026/12/03/09/",
    ]


def test_a_monitored_endpoint_that_does_not_exist_is_skipped(aws):
    result = run(aws)
    assert result.status == "skipped" and "not found" in result.reason


def test_a_manifest_the_function_may_not_read_counts_as_no_profile(aws):
    """Without s3:ListBucket on the manifest's prefix, S3 answers a missing key with AccessDenied."""
    deploy(aws, calibration=questions(1, 200))
    aws["s3"].delete_object(Bucket=BUCKET, Key=artifact_layout.manifest_key(MODEL, RUN))
    stubbed = boto3.client("s3", region_name="us-east-1")
    error: Any = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}

    def get_object(**_: Any) -> Any:
        raise ClientError(error, "GetObject")

    stubbed.get_object = get_object  # type: ignore[method-assign]
    result = check_endpoint(
        ENDPOINT,
        sagemaker=aws["sagemaker"],
        s3=stubbed,
        cloudwatch=aws["cloudwatch"],
        bucket=BUCKET,
        now=NOW,
        hours=1,
        max_files=10,
    )
    assert result.status == "skipped" and "calibration profile" in result.reason
