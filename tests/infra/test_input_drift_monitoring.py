"""The input-drift function and alarms: what the function publishes is what the alarms read; its role reaches
only the capture files, the manifests, the monitored endpoints and its own metric namespace."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import input_drift
from contracts.prompt_drift import DriftScore
from tests.aws_conformance.iam import PolicyEvaluator, policies_of_role
from tests.function_path import add_function_path
from tests.workflow.harness import TemplateResolver

add_function_path("input_drift")

from drift_check import metric_data  # noqa: E402

ENDPOINT = "llmq-dev-chat"


@pytest.fixture(scope="module")
def monitoring(dev_app):
    stack = dev_app.stacks.monitoring
    return stack, dev_app.template_json(stack)


def _drift_alarms(template: dict) -> list[dict]:
    return [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("Namespace") == input_drift.NAMESPACE
    ]


def test_every_drift_alarm_reads_exactly_what_the_function_publishes(monitoring):
    _, template = monitoring
    score = DriftScore(length_ks=0.5, token_jsd=0.2, reference_prompts=100, observed_prompts=100)
    published = {d["MetricName"]: d for d in metric_data(ENDPOINT, score, datetime(2026, 12, 3, 10, tzinfo=UTC))}
    alarms = _drift_alarms(template)
    assert sorted(a["MetricName"] for a in alarms) == sorted(published) == sorted(input_drift.THRESHOLDS)
    for alarm in alarms:
        datum = published[alarm["MetricName"]]
        assert alarm["Dimensions"] == datum["Dimensions"]
        assert alarm["Unit"] == datum["Unit"]
        assert alarm["Threshold"] == input_drift.THRESHOLDS[alarm["MetricName"]]
        assert alarm["AlarmName"] == input_drift.alarm_name(ENDPOINT, alarm["MetricName"])
        # Notify only: an SNS action, never the rollback rule; missing data (not judged) is not drift.
        assert alarm["TreatMissingData"] == "notBreaching"
        assert "calibration-from-capture" in alarm["AlarmDescription"]
        assert len(alarm["AlarmActions"]) == 1


def test_no_drift_alarm_reaches_the_rollback_rule(monitoring):
    _, template = monitoring
    names = {input_drift.alarm_name(ENDPOINT, m) for m in input_drift.THRESHOLDS}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Events::Rule":
            pattern = resource["Properties"].get("EventPattern", {})
            assert not names & set(pattern.get("detail", {}).get("alarmName", []))


def _role(dev_app, monitoring) -> tuple[PolicyEvaluator, str]:
    stack, template = monitoring
    resolver = TemplateResolver({s.stack_name: dev_app.template_json(s) for s in dev_app.all_stacks()})
    (function,) = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("FunctionName") == "llmq-dev-input-drift"
    ]
    logical_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    bucket = resolver.resolve(stack.stack_name, function["Properties"]["Environment"]["Variables"]["ARTIFACT_BUCKET"])
    return PolicyEvaluator(policies_of_role(resolver, stack.stack_name, logical_id), name="input-drift"), bucket


def test_the_function_may_publish_only_in_its_namespace_and_read_only_capture_and_manifests(dev_app, monitoring):
    role, bucket = _role(dev_app, monitoring)
    objects = f"arn:aws:s3:::{bucket}/models/llama-8b/run-001/"
    assert role.is_allowed("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": input_drift.NAMESPACE})
    assert not role.is_allowed("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "LLMQ/Quality"})
    assert role.is_allowed("s3:GetObject", f"{objects}capture/{ENDPOINT}/AllTraffic/2026/12/03/10/a.jsonl")
    assert role.is_allowed("s3:GetObject", f"{objects}manifest.json")
    assert not role.is_allowed("s3:GetObject", f"{objects}reports/report.json")
    assert not role.is_allowed("s3:PutObject", f"{objects}capture/x.jsonl")
    listed = f"models/llama-8b/run-001/capture/{ENDPOINT}/AllTraffic/2026/12/03/10/"
    assert role.is_allowed("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": listed})
    assert not role.is_allowed("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": "models/"})
    endpoint = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"
    assert role.is_allowed("sagemaker:DescribeEndpoint", endpoint)
    assert not role.is_allowed("sagemaker:UpdateEndpoint", endpoint)
    assert not role.is_allowed("sagemaker:DescribeEndpoint", endpoint.replace(ENDPOINT, "someone-elses"))


def test_a_stage_without_capture_has_no_drift_function_or_alarm(tmp_path):
    from tests.infra.conftest import synth_stage

    app = synth_stage(tmp_path, "prod")
    template = app.template_json(app.stacks.monitoring)
    assert _drift_alarms(template) == []
    assert not [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "input-drift" in str(r["Properties"].get("FunctionName"))
    ]


def test_the_candidate_models_execution_role_may_write_capture_files_with_the_project_key(dev_app):
    """Which identity writes capture files is not documented (docs/aws-behaviour.md): the candidate model's
    execution role may, so a capture written as that role is not refused."""
    pipeline = dev_app.stacks.pipeline
    resolver = TemplateResolver({s.stack_name: dev_app.template_json(s) for s in dev_app.all_stacks()})
    template = dev_app.template_json(pipeline)
    (policy,) = [
        r
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Policy" and lid.startswith("SageMakerRole")
    ]
    # The writes and the key grant (the image-pull statement's per-region mapping is not resolvable here).
    wanted = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "WriteOutputs" or "kms:GenerateDataKey" in s["Action"]
    ]
    role = PolicyEvaluator([resolver.resolve(pipeline.stack_name, s) for s in wanted], name="sagemaker")
    validate = next(
        r["Properties"]["Environment"]["Variables"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "validate-input" in str(r["Properties"].get("FunctionName"))
    )
    bucket = resolver.resolve(pipeline.stack_name, validate["ARTIFACT_BUCKET"])
    key = resolver.resolve(pipeline.stack_name, validate["KMS_KEY_ARN"])
    capture = f"arn:aws:s3:::{bucket}/models/llama-8b/run-001/capture/{ENDPOINT}/candidate/2026/12/03/10/x.jsonl"
    assert role.is_allowed("s3:PutObject", capture)
    assert role.is_allowed("kms:GenerateDataKey", key)
