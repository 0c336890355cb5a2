"""The contracts package: each shared fact behaves as both of its sides expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts import alarm_signals, artifact_layout, endpoint_tags
from contracts.function_settings import RollbackSettings, ValidateSettings

ROOT = Path(__file__).resolve().parents[2]


def test_every_alarm_name_parses_back_to_its_endpoint_role_and_signal():
    endpoints = ("chat", "chat-b")
    for endpoint in endpoints:
        for role in alarm_signals.ROLES:
            for signal in alarm_signals.SIGNALS:
                name = alarm_signals.alarm_name(endpoint, role, signal)
                assert alarm_signals.parse_alarm_name(name, endpoints) == (endpoint, role, signal)
        composite = alarm_signals.composite_alarm_name(endpoint)
        assert alarm_signals.parse_alarm_name(composite, endpoints) == (endpoint, None, None)
    assert alarm_signals.parse_alarm_name("other-candidate-5xx", endpoints) is None
    with pytest.raises(ValueError, match="no alarm"):
        alarm_signals.alarm_name("chat", "serving", "5xx")
    assert set(alarm_signals.ROLLBACK_SIGNALS) | set(alarm_signals.NOTIFY_ONLY_SIGNALS) == set(alarm_signals.SIGNALS)
    assert alarm_signals.candidate_rollback_alarms("chat") == [
        f"chat-candidate-{signal}" for signal in alarm_signals.ROLLBACK_SIGNALS
    ]


def test_run_keys_end_with_a_slash_and_sit_under_the_patterns_iam_scopes_to():
    from fnmatch import fnmatchcase

    assert artifact_layout.run_key("m", "r") == "models/m/r/"
    assert fnmatchcase(artifact_layout.manifest_key("m", "r"), artifact_layout.MANIFEST_PATTERN)
    assert fnmatchcase(artifact_layout.report_key("m", "r", artifact_layout.GATE_FILE), artifact_layout.REPORTS_PATTERN)
    assert fnmatchcase(artifact_layout.report_key("m", "r"), artifact_layout.REPORTS_PATTERN)
    record = artifact_layout.rollback_record_key("m", "r", "chat", "canary")
    assert record == "models/m/r/rollbacks/chat-canary.json"
    assert fnmatchcase(record, artifact_layout.ROLLBACK_RECORDS_PATTERN)
    assert artifact_layout.model_output_key("m", "r", "job").endswith("/job/output/model/")


def test_phases_that_block_a_canary_are_the_unfinished_rollbacks():
    assert set(endpoint_tags.UNFINISHED_PHASES) == {
        endpoint_tags.PHASE_ROLLING_BACK,
        endpoint_tags.PHASE_ROLLBACK_FAILED,
    }
    assert not set(endpoint_tags.ACTIVE_PHASES) & set(endpoint_tags.UNFINISHED_PHASES)


def test_the_rollback_function_does_not_act_while_the_candidate_is_evaluated_at_weight_0():
    """The state machine owns the outcome of an evaluation; its load test may trip alarms on purpose."""
    assert endpoint_tags.PHASE_EVALUATING not in endpoint_tags.ACTIVE_PHASES
    assert endpoint_tags.PHASE_EVALUATING not in endpoint_tags.UNFINISHED_PHASES


def test_what_the_stack_writes_is_what_the_function_parses():
    values = {
        "artifact_bucket": "bucket-1",
        "topic_arn": "arn:aws:sns:us-east-1:123456789012:t",
        "resource_prefix": "llmq-dev",
        "monitored_endpoints": ("chat", "chat-b"),
        "max_attempts": 3,
        "poll_seconds": 10,
    }
    env = RollbackSettings.environment(**values)
    assert env["MONITORED_ENDPOINTS"] == json.dumps(["chat", "chat-b"])
    parsed = RollbackSettings.from_environment(env)
    assert parsed.monitored_endpoints == ("chat", "chat-b")
    assert (parsed.max_attempts, parsed.poll_seconds, parsed.artifact_bucket) == (3, 10.0, "bucket-1")


def test_the_stack_side_refuses_unknown_and_missing_settings():
    with pytest.raises(TypeError, match="no field surprise"):
        RollbackSettings.environment(surprise=1)
    with pytest.raises(TypeError, match="needs"):
        ValidateSettings.environment(resource_prefix="p")


def test_variables_lambda_sets_itself_are_read_never_written_by_the_stack():
    """AWS_REGION is reserved: Lambda sets it in every function and refuses it in the configuration."""
    with pytest.raises(TypeError, match="Lambda sets region itself"):
        ValidateSettings.environment(region="us-east-1")
    with pytest.raises(TypeError, match="needs") as refused:
        ValidateSettings.environment(resource_prefix="p")
    assert "region" not in str(refused.value)
    with pytest.raises(ValueError, match="AWS_REGION"):
        ValidateSettings.from_environment({"RESOURCE_PREFIX": "p"})


def test_the_function_side_refuses_a_bad_environment_loudly():
    with pytest.raises(ValueError, match="ARTIFACT_BUCKET"):
        RollbackSettings.from_environment({"ROLLBACK_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "RESOURCE_PREFIX": "p"})
    with pytest.raises(ValueError, match="JSON array"):
        RollbackSettings.from_environment(
            {
                "ARTIFACT_BUCKET": "bucket",
                "ROLLBACK_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
                "RESOURCE_PREFIX": "p",
                "MONITORED_ENDPOINTS": '"chat"',
            }
        )


def test_run_paths_are_checked_against_the_typed_plan():
    from contracts.run_plan import run_path

    assert run_path("s3.gate_key") == "$.run.s3.gate_key"
    assert run_path("canary.first.candidate") == "$.run.canary.first.candidate"
    # One key into an API-shaped dict is the API's business.
    assert run_path("variants.candidate.InstanceType") == "$.run.variants.candidate.InstanceType"
    with pytest.raises(KeyError, match="Locations has no field 'gate'"):
        run_path("s3.gate")
    with pytest.raises(KeyError, match="holds no fields"):
        run_path("variants.candidate.InstanceType.deeper")


def test_the_validate_functions_plan_is_the_typed_plan():
    """build_plan checks its own output against RunPlan (extra fields forbidden, types enforced)."""
    from contracts.run_plan import RunPlan
    from tests.run_spec_support import DEFAULTS, example_spec, validate_spec

    outcome = validate_spec(example_spec(), DEFAULTS)
    assert outcome.valid, outcome.message
    assert RunPlan.model_validate(outcome.run).model_dump(mode="json") == outcome.run
