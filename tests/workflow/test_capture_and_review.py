"""Data capture on the run's configs, the input-drift function against it, and the human-review approval.

The dev stage captures 20 % of requests (cdk.json ``data_capture``): the canary and promoted configs carry a
DataCaptureConfig under the run's prefix; a restore goes back to the last approved config's own capture.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from contracts import artifact_layout, input_drift
from contracts.prompt_drift import profile
from stacks import operator_commands
from tests.workflow.conftest import BASELINE_CONFIG, BASELINE_ENDPOINT, SERVING_VARIANT
from tests.workflow.harness import run_execution

CANARY_CONFIG = "llmq-dev-llama-8b-run-001"
PROMOTED_CONFIG = "llmq-dev-llama-8b-run-001-promoted"
GROUP = "llmq-dev-llama-8b"
CALIBRATION = [
    f"Summarize the quarterly report number {i} for the finance team in three bullet points." for i in range(150)
]


def _capture_uri(account):
    return f"s3://{account.synthesized.bucket}/models/llama-8b/run-001/capture/"


def _package(account):
    (summary,) = account.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return account.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])


def test_canary_and_promoted_configs_capture_under_the_run_prefix_with_the_project_key(account):
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="capture")

    assert execution.status == "SUCCEEDED", execution.cause
    for name in (CANARY_CONFIG, PROMOTED_CONFIG):
        capture = account.sagemaker.describe_endpoint_config(EndpointConfigName=name)["DataCaptureConfig"]
        assert capture == {
            "EnableCapture": True,
            "InitialSamplingPercentage": 20,
            "DestinationS3Uri": _capture_uri(account),
            "KmsKeyId": account.synthesized.key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }
    # The promoted endpoint captures (DescribeEndpoint's summary) where the drift function looks.
    endpoint = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    assert endpoint["DataCaptureConfig"]["DestinationS3Uri"] == _capture_uri(account)
    assert endpoint["DataCaptureConfig"]["CaptureStatus"] == "Started"
    # DataCaptureConfig is "not currently supported" as a retained variant property: never sent.
    for call in account.calls.of("update_endpoint"):
        excluded = call.get("exclude_retained_variant_properties") or []
        assert {"VariantPropertyType": "DataCaptureConfig"} not in excluded
    (package,) = [_package(account)]
    assert package["ModelApprovalStatus"] == "Approved"
    (message,) = account.notifications()
    assert message["model_package_status"] == "Approved"


def test_a_rollback_restores_the_last_approved_configs_own_capture_not_the_runs(account):
    account.faults.alarm_name = f"{BASELINE_ENDPOINT}-candidate-5xx"
    account.faults.alarm_at_candidate_weight = 50
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="capture-rollback")

    assert execution.error == "CanaryAlarm"
    endpoint = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    assert endpoint["EndpointConfigName"] == BASELINE_CONFIG
    # The baseline config captures nothing; the canary's capture did not survive into the restore.
    assert not endpoint.get("DataCaptureConfig")


def _capture_line(body: dict, at: datetime) -> str:
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": json.dumps(body),
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps({"generated_text": "ok"}),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": "e", "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "eventVersion": "0",
        }
    )


def _drift_function(account):
    return next(f for f in account.synthesized.functions.values() if f.folder.name == "input_drift")


def test_drift_function_reads_the_promoted_endpoints_capture_as_its_role_and_publishes_what_the_alarms_read(account):
    bucket = account.synthesized.bucket
    calibration = {"sha256": "c" * 64, "samples_used": 150, "profile": profile(CALIBRATION).to_json()}
    account.faults.manifest_overrides = {"calibration": calibration}
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="drift")
    assert execution.status == "SUCCEEDED", execution.cause
    # Traffic in another language and of other lengths: drifted on both statistics.
    now = datetime.now(UTC)
    prompts = [f"Traduis en allemand la phrase numéro {i} : « le chat dort sur le canapé rouge »" for i in range(120)]
    lines = [_capture_line({"inputs": p, "parameters": {"max_new_tokens": 64}}, now) for p in prompts]
    key = artifact_layout.capture_hour_key("llama-8b", "run-001", BASELINE_ENDPOINT, SERVING_VARIANT, now)
    account.s3.put_object(Bucket=bucket, Key=f"{key}capture-1.jsonl", Body="\n".join(lines).encode())

    result = account.shims._run_handler(_drift_function(account), {})

    (check,) = result["checks"]
    assert check["status"] == "published", check
    assert check["score"]["drifted"] is True
    assert check["files"] == 1 and check["lines"] == 120
    metrics = account.cloudwatch.list_metrics(Namespace=input_drift.NAMESPACE)["Metrics"]
    assert sorted(m["MetricName"] for m in metrics) == sorted(input_drift.THRESHOLDS)
    for metric in metrics:
        assert metric["Dimensions"] == [{"Name": "EndpointName", "Value": BASELINE_ENDPOINT}]


def test_drift_function_publishes_nothing_below_the_minimum_sample(account):
    calibration = {"sha256": "c" * 64, "samples_used": 150, "profile": profile(CALIBRATION).to_json()}
    account.faults.manifest_overrides = {"calibration": calibration}
    assert run_execution(account.sfn, account.state_machine_arn, account.spec(), name="few").status == "SUCCEEDED"
    now = datetime.now(UTC)
    key = artifact_layout.capture_hour_key("llama-8b", "run-001", BASELINE_ENDPOINT, SERVING_VARIANT, now)
    lines = [_capture_line({"inputs": f"prompt {i}"}, now) for i in range(10)]
    account.s3.put_object(Bucket=account.synthesized.bucket, Key=f"{key}c.jsonl", Body="\n".join(lines).encode())

    (check,) = account.shims._run_handler(_drift_function(account), {})["checks"]

    assert check["status"] == "not-judged"
    assert account.cloudwatch.list_metrics(Namespace=input_drift.NAMESPACE)["Metrics"] == []


def _verdicts(tmp_path, name, preferred):
    """A verdict file as review.html downloads it: the candidate shown as A, the given preferences."""
    choice = {"candidate": "A", "baseline": "B", "tie": "tie"}
    verdicts = [
        {"id": f"item-{i}", "choice": choice[p], "candidate_was": "A", "preferred": p} for i, p in enumerate(preferred)
    ]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"review_version": 1, "sample_id": "s1", "reviewer": name, "verdicts": verdicts}))
    return path


def test_with_human_review_required_the_package_waits_until_the_review_says_go(account, monkeypatch, tmp_path):
    validate = next(f for f in account.synthesized.functions.values() if f.folder.name == "validate_input")
    monkeypatch.setitem(validate.environment, "REQUIRE_HUMAN_REVIEW", "true")
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="review")

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["outcome"] == "promoted"
    package = _package(account)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    (message,) = account.notifications()
    assert message["model_package_status"] == "PendingManualApproval"
    arn = package["ModelPackageArn"]

    # 4 of 8 prefer the baseline, 1 the candidate: net 37.5 % > 15 %, no-go, the package stays pending.
    no_go = _verdicts(tmp_path, "ann", ["baseline"] * 4 + ["candidate"] + ["tie"] * 3)
    assert operator_commands.main(["approve-after-review", "--model-package-arn", arn, str(no_go)]) == 1
    assert _package(account)["ModelApprovalStatus"] == "PendingManualApproval"

    go = _verdicts(tmp_path, "bob", ["candidate"] * 3 + ["baseline"] * 2 + ["tie"] * 3)
    assert operator_commands.main(["approve-after-review", "--model-package-arn", arn, str(go)]) == 0
    approved = _package(account)
    assert approved["ModelApprovalStatus"] == "Approved"
    assert "human review: go" in approved["ApprovalDescription"]
