"""The deployed entry point: EventBridge's alarm event in, weights changed, metric out.

The handler builds its own clients; its SageMaker client is pointed at the test
world's model of SageMaker (Updating after a change, UpdateEndpoint), S3 and SNS
are moto's.
"""

from __future__ import annotations

import json
import logging

import pytest
from moto import mock_aws

from tests.function_path import LambdaContext
from tests.unit.rollback_world import (
    CANDIDATE,
    ENDPOINT,
    PREFIX,
    SERVING,
    alarm_event,
    build_world,
    load_handler_module,
    use_emulated_aws,
)

import rollback_settings  # type: ignore[import-not-found]  # isort: skip
from rollback_settings import aws_client, load_settings  # type: ignore[import-not-found]  # isort: skip


CONTEXT = LambdaContext(f"{PREFIX}-rollback", aws_request_id="5f1b3b0e-request")


@pytest.fixture
def deployed(monkeypatch):
    use_emulated_aws(
        monkeypatch,
        POWERTOOLS_SERVICE_NAME="rollback",
        POWERTOOLS_METRICS_NAMESPACE="LLMQ/Rollback",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    load_settings.cache_clear()
    with mock_aws():
        world = build_world()
        for name, value in world.environ.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POLL_SECONDS", "0")  # the handler sleeps for real
        monkeypatch.setattr(rollback_settings.AwsClients, "sagemaker", property(lambda _: world.sagemaker))
        yield world, load_handler_module()
    aws_client.cache_clear()
    load_settings.cache_clear()


def _emf(stdout: str) -> list[dict]:
    blobs = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [b for b in blobs if "_aws" in b]


def test_handler_rolls_back_a_canary_and_emits_a_metric(deployed, capsys):
    world, module = deployed
    world.deploy(phase="canary")
    result = module.handler(alarm_event(f"{ENDPOINT}-candidate-latency-p95-vs-baseline"), CONTEXT)
    assert result["outcome"] == "rolled-back"
    assert world.weights() == {SERVING: 100.0, CANDIDATE: 0.0}
    record = next(iter(world.rollback_records().values()))
    assert record["who"]["request_id"] == "5f1b3b0e-request"
    [metric] = _emf(capsys.readouterr().out)
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LLMQ/Rollback"
    assert metric["Outcome"] == "rolled-back"
    assert metric["RollbackEvents"] == [1.0]
    assert metric["HandlerSecondsToTraffic"][0] >= 0
    assert metric["SecondsFromAlarmToTraffic"][0] > 0
    assert "RollbackFailed" not in metric


def test_handler_reports_a_failed_restore_with_the_rollback_failed_metric(deployed, capsys):
    world, module = deployed
    world.deploy(phase="promoted", approved_config="chat-bf16-v1-config")
    world.sagemaker.fail_next_update_endpoint("Insufficient capacity")
    result = module.handler(alarm_event(f"{ENDPOINT}-baseline-5xx"), CONTEXT)
    assert result["outcome"] == "rollback-failed"
    [metric] = _emf(capsys.readouterr().out)
    assert metric["RollbackFailed"] == [1.0]
    # The dimensions the monitoring stack's RollbackFailed alarm watches (stacks/rollback_function.py).
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Outcome", "service"]]
    assert (metric["Outcome"], metric["service"]) == ("rollback-failed", "rollback")
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LLMQ/Rollback"


def test_handler_survives_a_missing_endpoint(deployed, capsys, caplog):
    world, module = deployed
    caplog.set_level(logging.INFO)
    result = module.handler(alarm_event(f"{PREFIX}-gone-candidate-5xx"), CONTEXT)
    assert result["outcome"] == "endpoint-missing"
    out = capsys.readouterr().out
    assert [m["Outcome"] for m in _emf(out)] == ["endpoint-missing"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["endpoint llmq-dev-gone does not exist; nothing to roll back"]
    assert len(world.notifications()) == 1


def test_handler_accepts_the_alarm_action_shape_too(deployed):
    # The same alarm data as CloudWatch sends it to a Lambda alarm action (what CloudWatchAlarmEvent types).
    world, module = deployed
    world.deploy(phase="canary")
    bridge = alarm_event(f"{ENDPOINT}-canary")
    action = {
        "source": "aws.cloudwatch",
        "alarmArn": bridge["resources"][0],
        "accountId": bridge["account"],
        "time": bridge["time"],
        "region": bridge["region"],
        "alarmData": bridge["detail"],
    }
    assert module.handler(action, CONTEXT)["outcome"] == "rolled-back"
    assert world.weights() == {SERVING: 100.0, CANDIDATE: 0.0}
