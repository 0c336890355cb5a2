"""The quality sampler and the alarms on its metrics agree: every alarm on a custom metric has a publisher.

The publisher's output is contracts/live_quality.py's ``metric_data`` (what lambda/quality_sampler/
sends to PutMetricData, tests/unit/test_quality_sampler.py); the alarms are read from the
synthesized template. Namespace, metric name, dimensions (names, values, order) and unit must match.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import input_drift
from contracts.endpoint_tags import CANDIDATE_VARIANT
from contracts.live_quality import DIMENSIONS, METRICS, NAMESPACE, QualitySample, metric_data
from stacks.quality_sampler_function import QualitySamplerFunction, schedule_minutes
from tests.aws_conformance.iam import PolicyEvaluator, policies_of_role
from tests.workflow.harness import ACCOUNT, REGION, TemplateResolver

ROLLBACK_NAMESPACE = "LLMQ/Rollback"  # published by the rollback function (tests/infra/test_monitoring_stack.py)
# Published by the input-drift function; its alarms are held to it by tests/infra/test_input_drift_monitoring.py.
DRIFT_NAMESPACE = input_drift.NAMESPACE


@pytest.fixture(scope="module")
def monitoring(dev_app):
    stack = dev_app.stacks.monitoring
    return stack, dev_app.template_json(stack)


def _alarms(template_json) -> list[dict]:
    return [r["Properties"] for r in template_json["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]


def _published(endpoint: str, variant: str) -> list[dict]:
    """Everything the sampler can publish for one judged variant: every metric computed."""
    sample = QualitySample(values={spec.name: 1.0 for spec in METRICS})
    return metric_data(endpoint, variant, sample, datetime(2026, 1, 1, tzinfo=UTC))


def test_every_alarm_on_a_custom_metric_matches_what_its_publisher_sends(monitoring, dev_app):
    _, template_json = monitoring
    custom = [a for a in _alarms(template_json) if "Namespace" in a and not a["Namespace"].startswith("AWS/")]
    assert {a["Namespace"] for a in custom} == {NAMESPACE, ROLLBACK_NAMESPACE, DRIFT_NAMESPACE}
    quality = [a for a in custom if a["Namespace"] == NAMESPACE]
    # A quality alarm per role of every monitored endpoint.
    assert len(quality) == 2 * len(dev_app.config.monitored_endpoints) > 0
    # The variants the sampler judges: the candidate during a canary, the serving variant after promotion.
    judged = {CANDIDATE_VARIANT, dev_app.config.serving_variant}
    for alarm in quality:
        endpoint = alarm["Dimensions"][0]["Value"]
        variant = alarm["Dimensions"][1]["Value"]
        assert [d["Name"] for d in alarm["Dimensions"]] == list(DIMENSIONS)
        assert endpoint in dev_app.config.monitored_endpoints and variant in judged
        matching = [
            datum
            for datum in _published(endpoint, variant)
            if datum["MetricName"] == alarm["MetricName"]
            and datum["Dimensions"] == alarm["Dimensions"]
            and datum["Unit"] == alarm["Unit"]
        ]
        assert len(matching) == 1, alarm["AlarmName"]


def test_every_published_metric_is_graphed_and_the_alarmed_one_rolls_back(monitoring):
    stack, _ = monitoring
    body = str(stack.resolve(stack.dashboard.node.default_child.dashboard_body))
    for spec in METRICS:
        assert spec.name in body, spec.name
    for monitoring_of_endpoint in stack.endpoints.values():
        names = monitoring_of_endpoint.rollback_alarm_names
        endpoint = monitoring_of_endpoint.endpoint_name
        assert f"{endpoint}-candidate-quality" in names and f"{endpoint}-baseline-quality" in names


def test_the_sampler_runs_every_half_quality_period_in_the_vpc(monitoring, dev_app):
    stack, template_json = monitoring
    rules = [
        r["Properties"]
        for r in template_json["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and r["Properties"].get("Name") == "llmq-dev-quality-sampler"
    ]
    minutes = schedule_minutes(dev_app.config.monitoring.quality_period_seconds)
    assert minutes == 2 and [r["ScheduleExpression"] for r in rules] == [f"rate({minutes} minutes)"]
    function_id = stack.get_logical_id(stack.quality_sampler.function.node.default_child)
    props = template_json["Resources"][function_id]["Properties"]
    assert props["FunctionName"] == "llmq-dev-quality-sampler"
    assert props["VpcConfig"]["SubnetIds"] and props["VpcConfig"]["SecurityGroupIds"]
    env = props["Environment"]["Variables"]
    assert env["SERVING_VARIANT"] == dev_app.config.serving_variant
    assert env["SAMPLE_AFTER_PROMOTION_SECONDS"] == "86400"
    assert props["Timeout"] == 300


def test_the_sampler_may_publish_only_into_its_namespace_and_invoke_only_monitored_endpoints(monitoring, dev_app):
    stack, _ = monitoring
    templates = {s.stack_name: dev_app.template_json(s) for s in dev_app.all_stacks()}
    role_id = stack.get_logical_id(stack.quality_sampler.python_function.role.node.default_child)
    statements = policies_of_role(templates, stack.stack_name, role_id)
    publishing = [s for s in statements if "cloudwatch:PutMetricData" in str(s["Action"])]
    assert publishing == [
        {
            "Sid": "PublishQualityMetricsOnly",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
        }
    ]
    role = PolicyEvaluator(statements, name="sampler")
    assert role.is_allowed("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": NAMESPACE})
    assert not role.is_allowed("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": ROLLBACK_NAMESPACE})
    assert not role.is_allowed("cloudwatch:PutMetricData", "*", {})
    arn = "arn:aws:sagemaker:{}:{}:endpoint/{}"
    # The template's pseudo parameters as the harness resolves them.
    region, account = dev_app.config.region or REGION, dev_app.config.account or ACCOUNT
    for endpoint in dev_app.config.monitored_endpoints:
        for action in ("sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:ListTags"):
            assert role.is_allowed(action, arn.format(region, account, endpoint.lower())), (action, endpoint)
    assert not role.is_allowed("sagemaker:InvokeEndpoint", arn.format(region, account, "someone-elses"))
    for action in ("sagemaker:UpdateEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities", "sagemaker:AddTags"):
        assert not role.is_allowed(action, arn.format(region, account, dev_app.config.monitored_endpoints[0]))


def test_on_a_capturing_stage_the_sampler_reads_recent_capture_only(monitoring, dev_app):
    stack, template_json = monitoring
    assert dev_app.config.data_capture.enabled  # dev captures: the sampler adds captured prompts
    function_id = stack.get_logical_id(stack.quality_sampler.function.node.default_child)
    env = template_json["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    assert env["CAPTURED_PROMPTS"] == str(dev_app.config.monitoring.quality_sample_captured_prompts) != "0"
    resolver = TemplateResolver({s.stack_name: dev_app.template_json(s) for s in dev_app.all_stacks()})
    role_id = stack.get_logical_id(stack.quality_sampler.python_function.role.node.default_child)
    role = PolicyEvaluator(policies_of_role(resolver, stack.stack_name, role_id), name="sampler")
    bucket = resolver.resolve(
        stack.stack_name,
        template_json["Resources"][function_id]["Properties"]["Environment"]["Variables"]["ARTIFACT_BUCKET"],
    )
    run = f"models/llama-8b/run-001/capture/{dev_app.config.monitored_endpoints[0]}/candidate/2026/12/03/10/"
    assert role.is_allowed("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": run})
    assert not role.is_allowed("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": "models/"})
    assert role.is_allowed("s3:GetObject", f"arn:aws:s3:::{bucket}/{run}x.jsonl")
    assert not role.is_allowed("s3:PutObject", f"arn:aws:s3:::{bucket}/{run}x.jsonl")
    assert not role.is_allowed("s3:GetObject", f"arn:aws:s3:::{bucket}/models/llama-8b/run-001/manifest.json")


def test_a_stage_without_capture_gives_the_sampler_no_captured_prompts():
    from stacks.config import StageConfig

    config = StageConfig(stage="x", monitored_endpoints=("llmq-x-chat",))
    assert not config.data_capture.enabled
    assert QualitySamplerFunction.captured_prompts(config) == 0
