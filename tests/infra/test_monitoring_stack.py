"""Monitoring stack: per-variant alarms, the rollback rule, the function's reach and the dashboard."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template
from pydantic import ValidationError

from stacks.config import MonitoringThresholds
from stacks.deployment_guardrails import guardrail_deployment_config
from stacks.endpoint_monitoring import EndpointMonitoring

ENDPOINT = "llmq-dev-chat"
VARIANTS = ("baseline", "candidate")  # roles in alarm names
SERVING = "AllTraffic"  # StageConfig.serving_variant (default): the dimension of "baseline" alarms
VARIANT_NAME = {"baseline": SERVING, "candidate": "candidate"}


@pytest.fixture(scope="module")
def monitoring(dev_app):
    stack = dev_app.stacks.monitoring
    return stack, dev_app.template(stack), dev_app.template_json(stack)


def _alarm(template_json, name: str) -> dict:
    found = [
        r["Properties"]
        for r in template_json["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("AlarmName") == name
    ]
    assert len(found) == 1, f"{name}: {len(found)} alarms"
    props: dict = found[0]
    return props


def _metric_stats(props: dict) -> dict[str, dict]:
    return {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}


def _expression(props: dict) -> str:
    [expression] = [str(m["Expression"]) for m in props["Metrics"] if "Expression" in m]
    return expression


def _dims(endpoint: str, role: str) -> list[dict]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": VARIANT_NAME[role]}]


def test_every_monitored_endpoint_gets_alarms_on_both_variants(dev_app, monitoring):
    stack, _, template_json = monitoring
    assert list(stack.endpoints) == list(dev_app.config.monitored_endpoints) == [ENDPOINT]
    names = {
        r["Properties"]["AlarmName"]
        for r in template_json["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert names == {
        f"{ENDPOINT}-baseline-latency-p95",
        f"{ENDPOINT}-baseline-5xx",
        f"{ENDPOINT}-baseline-4xx",
        f"{ENDPOINT}-candidate-latency-p95",
        f"{ENDPOINT}-candidate-5xx",
        f"{ENDPOINT}-candidate-4xx",
        # Comparisons with the baseline exist only for the candidate.
        f"{ENDPOINT}-candidate-latency-p95-vs-baseline",
        f"{ENDPOINT}-candidate-quality",
        # The serving variant's live quality, judged by the sampler after promotion.
        f"{ENDPOINT}-baseline-quality",
        # The function's own failure (its metric, published by the function).
        "llmq-dev-rollback-failed",
        # dev captures data: the input-drift alarms (notify only; tests/infra/test_input_drift_monitoring.py).
        f"{ENDPOINT}-input-drift-length",
        f"{ENDPOINT}-input-drift-words",
    }


def test_baseline_named_alarms_watch_the_serving_variant_by_its_own_name(monitoring):
    _, _, template_json = monitoring
    assert _alarm(template_json, f"{ENDPOINT}-baseline-latency-p95")["Dimensions"][1] == {
        "Name": "VariantName",
        "Value": SERVING,
    }
    props = _alarm(template_json, f"{ENDPOINT}-baseline-5xx")
    assert {json.dumps(s["Metric"]["Dimensions"]) for s in _metric_stats(props).values()} == {
        json.dumps(_dims(ENDPOINT, "baseline"))
    }
    # No alarm watches a variant named "baseline": that is a role word in names only.
    assert '{"Name": "VariantName", "Value": "baseline"}' not in json.dumps(template_json["Resources"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_latency_alarm_is_p95_model_latency_in_microseconds_and_only_notifies(monitoring, variant):
    stack, _, template_json = monitoring
    props = _alarm(template_json, f"{ENDPOINT}-{variant}-latency-p95")
    # Notify only: an SNS action to the rollback topic, never the rollback rule or the composite.
    topic_id = stack.get_logical_id(stack.rollback.topic.node.default_child)
    assert props["AlarmActions"] == [{"Ref": topic_id}]
    assert "NOTIFY ONLY" in props["AlarmDescription"]
    assert props["Namespace"] == "AWS/SageMaker"
    assert props["MetricName"] == "ModelLatency"
    assert props["ExtendedStatistic"] == "p95"
    assert props["Dimensions"] == _dims(ENDPOINT, variant)
    assert props["Threshold"] == 10_000 * 1000  # 10 s default, ModelLatency is in microseconds
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    # Defaults from benchmarks/alarm_tuning.py: a 5-minute window, evaluated every minute, 1 of 1.
    assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (300, 1, 1)
    assert props["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("variant", "code", "threshold"), [(v, c, t) for v in VARIANTS for c, t in (("5XX", 2), ("4XX", 5))]
)
def test_error_rate_alarms_divide_errors_by_invocations_of_the_same_variant(monitoring, variant, code, threshold):
    _, _, template_json = monitoring
    props = _alarm(template_json, f"{ENDPOINT}-{variant}-{code.lower()}")
    err, inv = f"e{code[0]}{variant[0]}", f"i{variant[0]}"
    assert _expression(props) == f"IF({inv} >= 200, 100 * FILL({err}, 0) / {inv}, 0)"
    stats = _metric_stats(props)
    assert stats[err]["Metric"] == {
        "Namespace": "AWS/SageMaker",
        "MetricName": f"Invocation{code}Errors",
        "Dimensions": _dims(ENDPOINT, variant),
    }
    assert stats[inv]["Metric"]["MetricName"] == "Invocations"
    assert stats[inv]["Metric"]["Dimensions"] == _dims(ENDPOINT, variant)
    assert {s["Stat"] for s in stats.values()} == {"Sum"}
    assert {s["Period"] for s in stats.values()} == {300}
    assert props["Threshold"] == threshold
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (1, 1)


def test_relative_latency_alarm_compares_candidate_p95_with_baseline_p95(monitoring):
    _, _, template_json = monitoring
    props = _alarm(template_json, f"{ENDPOINT}-candidate-latency-p95-vs-baseline")
    assert _expression(props) == "IF(ic >= 200 AND ib >= 200 AND pb > 0, pc / pb, 0)"
    stats = _metric_stats(props)
    assert stats["pc"] == {
        "Metric": {
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": _dims(ENDPOINT, "candidate"),
        },
        "Period": 300,
        "Stat": "p95",
    }
    assert stats["pb"]["Metric"]["Dimensions"] == _dims(ENDPOINT, "baseline")
    assert stats["ib"]["Metric"]["MetricName"] == "Invocations"
    assert props["Threshold"] == 1.4
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (1, 1)


@pytest.mark.parametrize("role", VARIANTS)
def test_quality_alarms_read_the_metric_the_sampler_publishes(monitoring, role):
    _, _, template_json = monitoring
    props = _alarm(template_json, f"{ENDPOINT}-{role}-quality")
    # docs/contracts.md: namespace, name, dimensions and unit the quality sampler publishes
    # (held to the publisher itself by tests/infra/test_quality_sampler.py).
    assert props["Namespace"] == "LLMQ/Quality"
    assert props["MetricName"] == "PerplexityIncreasePercent"
    assert props["Dimensions"] == _dims(ENDPOINT, role)
    assert (props["Statistic"], props["Unit"]) == ("Average", "Percent")
    assert props["Threshold"] == 5
    assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (300, 3, 2)
    assert props["TreatMissingData"] == "notBreaching"
    assert "published by the quality sampler" in props["AlarmDescription"]


def test_rollback_failed_alarm_watches_the_functions_own_metric_and_notifies(monitoring):
    stack, _, template_json = monitoring
    props = _alarm(template_json, "llmq-dev-rollback-failed")
    assert (props["Namespace"], props["MetricName"]) == ("LLMQ/Rollback", "RollbackFailed")
    # The dimensions the handler's EMF blob carries (tests/unit/test_rollback_handler.py).
    assert props["Dimensions"] == [
        {"Name": "Outcome", "Value": "rollback-failed"},
        {"Name": "service", "Value": "rollback"},
    ]
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )
    assert props["TreatMissingData"] == "notBreaching"
    topic_id = stack.get_logical_id(stack.rollback.topic.node.default_child)
    assert props["AlarmActions"] == [{"Ref": topic_id}]


def test_composite_alarm_is_any_candidate_alarm(monitoring):
    stack, template, _ = monitoring
    [composite] = template.find_resources("AWS::CloudWatch::CompositeAlarm").values()
    props = composite["Properties"]
    assert props["AlarmName"] == f"{ENDPOINT}-canary"
    parts = props["AlarmRule"]["Fn::Join"][1]
    referenced = [p["Fn::GetAtt"][0] for p in parts if isinstance(p, dict)]
    alarms = stack.endpoints[ENDPOINT].alarms
    expected = [
        stack.get_logical_id(a.node.default_child)
        for (v, signal), a in alarms.items()
        if v == "candidate" and signal != "latency-p95"
    ]
    assert sorted(referenced) == sorted(expected)
    assert len(referenced) == 4  # ratio, 5xx, 4xx, quality: not the notify-only absolute latency
    assert [p for p in parts if isinstance(p, str) and "OR" in p] and not [p for p in parts if "AND" in str(p)]


def test_rule_sends_candidate_and_composite_alarm_transitions_to_alarm_to_the_rollback_function(monitoring):
    stack, template, _ = monitoring
    function_id = stack.get_logical_id(stack.rollback.function.node.default_child)
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "Name": f"{ENDPOINT}-rollback",
            "EventPattern": {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {
                    # Candidate and serving-variant rollback alarms; the function acts by phase.
                    "alarmName": [
                        f"{ENDPOINT}-candidate-5xx",
                        f"{ENDPOINT}-candidate-4xx",
                        f"{ENDPOINT}-candidate-latency-p95-vs-baseline",
                        f"{ENDPOINT}-candidate-quality",
                        f"{ENDPOINT}-baseline-5xx",
                        f"{ENDPOINT}-baseline-4xx",
                        f"{ENDPOINT}-baseline-quality",
                        f"{ENDPOINT}-canary",
                    ],
                    "state": {"value": ["ALARM"]},
                },
            },
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [function_id, "Arn"]},
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 8},
                    }
                )
            ],
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission", {"Principal": "events.amazonaws.com", "Action": "lambda:InvokeFunction"}
    )


def test_rollback_function_knows_bucket_topic_and_endpoints(monitoring):
    stack, template, _ = monitoring
    function_id = stack.get_logical_id(stack.rollback.function.node.default_child)
    props = template.to_json()["Resources"][function_id]["Properties"]
    env = props["Environment"]["Variables"]
    # One encoding for lists in every function's environment (contracts/function_settings.py).
    assert json.loads(env["MONITORED_ENDPOINTS"]) == [ENDPOINT]
    assert env["RESOURCE_PREFIX"] == "llmq-dev"
    assert env["POWERTOOLS_SERVICE_NAME"] == "rollback"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "LLMQ/Rollback"
    assert (env["BASELINE_VARIANT"], env["CANDIDATE_VARIANT"]) == (SERVING, "candidate")
    assert env["MAX_ATTEMPTS"] == "3"  # the first invocation and Lambda's 2 async retries
    # The bounded waits (before and after acting) fit in one invocation.
    assert 2 * int(env["WAIT_IN_SERVICE_SECONDS"]) < props["Timeout"] < int(env["LOCK_STALE_SECONDS"])
    assert env["PROMOTED_ROLLBACK_WINDOW_SECONDS"] == "86400"
    assert "Fn::ImportValue" in json.dumps(env["ARTIFACT_BUCKET"])
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["VpcConfig"]["SubnetIds"]
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 3600,
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )
    template.has_resource_properties(
        "AWS::SNS::Topic", {"TopicName": "llmq-dev-rollbacks", "KmsMasterKeyId": Match.any_value()}
    )


def _role_statements(stack, template_json) -> list[dict]:
    role_id = stack.get_logical_id(stack.rollback.python_function.role.node.default_child)
    statements = []
    for resource in template_json["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_rollback_function_may_change_only_the_monitored_endpoints(monitoring):
    stack, _, template_json = monitoring
    statements = _role_statements(stack, template_json)
    sagemaker = [s for s in statements if any(str(a).startswith("sagemaker:") for a in _list(s["Action"]))]
    by_sid = {s["Sid"]: s for s in sagemaker}
    assert set(by_sid) == {
        "ReadTagAndShiftMonitoredEndpoints",
        "RestoreAnyLastApprovedEndpointConfig",
        "RejectProjectModelPackages",
        # What Application Auto Scaling checks the caller for when the restore re-registers the
        # serving variant's scaling: the same endpoints, configs read-only.
        "ScalingValidatesEndpointAccess",
        "ScalingValidatesEndpointConfigAccess",
    }
    validated = by_sid["ScalingValidatesEndpointAccess"]
    assert [json.dumps(r).endswith(f':endpoint/{ENDPOINT}"]]}}') for r in _list(validated["Resource"])] == [True]
    assert by_sid["ScalingValidatesEndpointConfigAccess"]["Action"] == "sagemaker:DescribeEndpointConfig"
    endpoints = by_sid["ReadTagAndShiftMonitoredEndpoints"]
    assert [json.dumps(r).endswith(f':endpoint/{ENDPOINT}"]]}}') for r in _list(endpoints["Resource"])] == [True]
    assert {"sagemaker:AddTags", "sagemaker:ListTags", "sagemaker:UpdateEndpoint"} <= set(endpoints["Action"])
    # UpdateEndpoint authorizes on the config too, and the restored config may have any name.
    configs = by_sid["RestoreAnyLastApprovedEndpointConfig"]
    assert sorted(configs["Action"]) == ["sagemaker:DescribeEndpointConfig", "sagemaker:UpdateEndpoint"]
    assert json.dumps(configs["Resource"]).endswith(':endpoint-config/*"]]}')
    assert ":model-package/llmq-dev-*/*" in json.dumps(by_sid["RejectProjectModelPackages"]["Resource"])
    actions = {a for s in sagemaker for a in _list(s["Action"])}
    assert actions == {
        "sagemaker:DescribeEndpoint",
        "sagemaker:ListTags",
        "sagemaker:AddTags",
        "sagemaker:UpdateEndpointWeightsAndCapacities",
        "sagemaker:UpdateEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:UpdateModelPackage",
    }
    s3 = [s for s in statements if any(str(a).startswith("s3:") for a in _list(s["Action"]))]
    assert len(s3) == 1
    assert sorted(_list(s3[0]["Action"])) == ["s3:GetObject", "s3:PutObject"]
    # Its own records and a run's lifted-autoscaling record; nothing else in the bucket.
    scopes = sorted(json.dumps(r).rsplit("/models/", 1)[-1] for r in _list(s3[0]["Resource"]))
    assert scopes == ['*/autoscaling/*"]]}', '*/rollbacks/*"]]}']


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _dashboard_body(template_json) -> str:
    [dashboard] = [r for r in template_json["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]
    if isinstance(body, str):
        return body
    return "".join(part if isinstance(part, str) else "<token>" for part in body["Fn::Join"][1])


def test_dashboard_shows_both_variants_side_by_side(monitoring):
    _, template, template_json = monitoring
    template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "llmq-dev-canaries"})
    body = _dashboard_body(template_json)
    for title in (
        "ModelLatency p50/p95 (ms)",
        "invocations",
        "traffic share (observed weights, %)",
        "error rates (%)",
        "candidate p95 / baseline p95",
        "PerplexityIncreasePercent",
        "alarms",
        "rollback function",
    ):
        assert f'"title":"{ENDPOINT} {title}"' in body or f'"title":"{title}"' in body, title
    for variant in VARIANTS:
        for stat in ("p50", "p95"):
            assert f'"label":"{variant} {stat} (ms)"' in body
        assert f'"label":"{variant} share of invocations (%)"' in body
        assert f'"label":"{variant} invocations"' in body
    widgets = json.loads(body.replace("<token>", "x"))["widgets"]
    graphs = [w for w in widgets if w["type"] == "metric" and ENDPOINT in w["properties"].get("title", "")]
    # Three graphs per row, on the same row.
    assert {w["y"] for w in graphs[:3]} == {graphs[0]["y"]}
    assert sorted(w["x"] for w in graphs[:3]) == [0, 8, 16]


def test_thresholds_come_from_the_stage_config(tmp_path):
    thresholds = MonitoringThresholds(
        latency_p95_ms=2500, latency_p95_ratio=1.2, error_5xx_percent=0.5, min_invocations=3,
        evaluation_periods=10, datapoints_to_alarm=4, period_seconds=120,
    )  # fmt: skip
    stack = Stack(App(outdir=str(tmp_path)), "Probe")
    EndpointMonitoring(stack, "Chat", endpoint_name="llmq-test-chat", thresholds=thresholds)
    template = Template.from_stack(stack).to_json()
    latency = _alarm(template, "llmq-test-chat-candidate-latency-p95")
    assert (latency["Threshold"], latency["Period"]) == (2_500_000, 120)
    assert (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (10, 4)
    ratio = _alarm(template, "llmq-test-chat-candidate-latency-p95-vs-baseline")
    assert ratio["Threshold"] == 1.2
    assert "ic >= 3 AND ib >= 3" in _expression(ratio)
    assert _alarm(template, "llmq-test-chat-baseline-5xx")["Threshold"] == 0.5


def test_config_refuses_more_datapoints_than_periods():
    with pytest.raises(ValidationError, match="datapoints_to_alarm must not exceed evaluation_periods"):
        MonitoringThresholds(evaluation_periods=2, datapoints_to_alarm=3)
    with pytest.raises(ValidationError, match="multiple of 60"):
        MonitoringThresholds(period_seconds=90)


def test_guardrail_canary_config_rolls_back_on_the_variants_own_alarms(monitoring):
    stack, _, _ = monitoring
    config = stack.endpoints[ENDPOINT].guardrail_deployment_config("candidate", step_percent=10, wait_seconds=600)
    assert config == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 2 * 600 + 600 + 1800,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [
                {"AlarmName": f"{ENDPOINT}-candidate-5xx"},
                {"AlarmName": f"{ENDPOINT}-candidate-4xx"},
                {"AlarmName": f"{ENDPOINT}-candidate-quality"},
            ]
        },
    }


def test_guardrail_linear_config_and_its_limits():
    config = guardrail_deployment_config(["a"], mode="linear", step_percent=25, wait_seconds=300)
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 300,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] == 4 * 300 + 600 + 1800
    assert guardrail_deployment_config(["a"], mode="all-at-once")["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"
    ] == {"Type": "ALL_AT_ONCE"}
    with pytest.raises(ValueError, match="1 to 10 alarms"):
        guardrail_deployment_config([])
    with pytest.raises(ValueError, match="canary: 1-50"):
        guardrail_deployment_config(["a"], step_percent=60)
    with pytest.raises(ValueError, match="wait_seconds"):
        guardrail_deployment_config(["a"], wait_seconds=4000)
    with pytest.raises(ValueError, match="max_execution_seconds"):
        guardrail_deployment_config(["a"], max_execution_seconds=300)
