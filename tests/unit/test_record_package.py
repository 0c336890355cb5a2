"""The record step's logic (lambda/record_package/package_record.py) against emulated S3 and SageMaker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lambda" / "record_package"))

from botocore.exceptions import ClientError  # noqa: E402
from botocore.stub import Stubber  # noqa: E402
from package_record import ManifestError, PlanError, record, verify_manifest  # noqa: E402

BUCKET = "artifacts-bucket"
RUN: dict[str, Any] = {
    "model_name": "llama-8b",
    "run_id": "r1",
    "algorithm": "gptq",
    "scheme": "W4A16",
    "group_size": 128,
    "names": {"package_group": "llmq-dev-llama-8b"},
    "s3": {
        "bucket": BUCKET,
        "artifact_uri": f"s3://{BUCKET}/models/llama-8b/r1/job/output/model/",
        "manifest_key": "models/llama-8b/r1/manifest.json",
    },
    "images": {"serving": "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130"},
    "instances": {"serving": "ml.g5.2xlarge"},
    "serving_environment": {"HF_MODEL_ID": "/opt/ml/model"},
}
MANIFEST = {
    "quantization": {"algorithm": "gptq", "scheme": "W4A16", "group_size": 128, "ignore": ["lm_head"]},
    "calibration": {"sha256": "c" * 64, "samples_used": 256},
    "source": {"sha256": "s" * 64},
    "versions": {"llmcompressor": "0.14.0.1", "torch": "2.13.0"},
    "metrics": {"wall_seconds": 193.0, "source_bytes": 16, "artifact_bytes": 5},
}


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield s3, boto3.client("sagemaker")


def put_manifest(s3, manifest):
    s3.put_object(Bucket=BUCKET, Key="models/llama-8b/r1/job/output/model/manifest.json", Body=json.dumps(manifest))


def test_manifest_meeting_the_contract_has_no_problems():
    assert verify_manifest(MANIFEST, RUN) == []


def test_manifest_problems_are_all_listed():
    broken = {**MANIFEST, "quantization": {"algorithm": "awq", "scheme": "W8A8", "group_size": 64, "ignore": []}}
    del broken["source"]
    problems = verify_manifest(broken, RUN)
    assert "missing source.sha256" in problems
    assert any("quantization.algorithm is 'awq'" in p for p in problems)
    assert any("quantization.scheme is 'W8A8'" in p for p in problems)
    assert any("quantization.group_size is 64" in p for p in problems)


def test_record_registers_a_pending_package_with_metadata_and_copies_the_manifest(aws):
    s3, sm = aws
    put_manifest(s3, MANIFEST)
    result = record(RUN, "arn:aws:states:us-east-1:123456789012:execution:m:e", s3=s3, sm=sm)
    assert result.created
    package = sm.describe_model_package(ModelPackageName=result.model_package_arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"]["llmq:run-id"] == "r1"
    assert package["CustomerMetadataProperties"]["llmq:calibration-sha256"] == "c" * 64
    assert package["CustomerMetadataProperties"]["llmq:version-llmcompressor"] == "0.14.0.1"
    copied = json.loads(s3.get_object(Bucket=BUCKET, Key="models/llama-8b/r1/manifest.json")["Body"].read())
    assert copied == MANIFEST


def test_recording_the_same_run_again_returns_the_existing_package(aws):
    s3, sm = aws
    put_manifest(s3, MANIFEST)
    first = record(RUN, "e1", s3=s3, sm=sm)
    sm.update_model_package(ModelPackageArn=first.model_package_arn, ModelApprovalStatus="Rejected")
    second = record(RUN, "e2", s3=s3, sm=sm)
    assert not second.created
    assert second.model_package_arn == first.model_package_arn
    assert second.approval_status == "Rejected"
    assert len(sm.list_model_packages(ModelPackageGroupName="llmq-dev-llama-8b")["ModelPackageSummaryList"]) == 1


def test_a_missing_or_wrong_manifest_registers_nothing(aws):
    s3, sm = aws
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        record(RUN, "e", s3=s3, sm=sm)
    put_manifest(s3, {**MANIFEST, "metrics": {"wall_seconds": 1}})
    with pytest.raises(ManifestError, match=r"missing metrics\.artifact_bytes"):
        record(RUN, "e", s3=s3, sm=sm)
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


@pytest.mark.parametrize(
    ("code", "status", "raised", "message"),
    [
        # Without s3:ListBucket (the deployed function has none), S3 answers a missing key with 403.
        ("AccessDenied", 403, ManifestError, r"no manifest\.json under .* \(AccessDenied\).*may not read it"),
        # Any other error is not disguised as a missing manifest.
        ("SlowDown", 503, ClientError, "SlowDown"),
    ],
    ids=["denied-reads-as-missing-or-unreadable", "other-errors-raised-as-they-are"],
)
def test_an_s3_error_reading_the_manifest_registers_nothing(aws, code, status, raised, message):
    s3, sm = aws
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(raised, match=message):
            record(RUN, "e", s3=s3, sm=sm)
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


@pytest.mark.parametrize("name", ["x" * 64, "llmq-dev--", "-llmq", "llmq_dev"])
def test_a_package_group_name_sagemaker_would_refuse_stops_before_any_call(aws, name):
    s3, sm = aws
    put_manifest(s3, MANIFEST)
    with Stubber(s3), Stubber(sm), pytest.raises(PlanError, match="CreateModelPackageGroup"):
        # Stubbers with no responses queued: any AWS call would fail differently.
        record({**RUN, "names": {**RUN["names"], "package_group": name}}, "e", s3=s3, sm=sm)


def test_a_63_character_package_group_name_is_accepted(aws):
    s3, sm = aws
    put_manifest(s3, MANIFEST)
    name = "llmq-dev-" + "m" * 54
    assert len(name) == 63
    record({**RUN, "names": {**RUN["names"], "package_group": name}}, "e", s3=s3, sm=sm)
    assert sm.list_model_packages(ModelPackageGroupName=name)["ModelPackageSummaryList"]
