"""The rollback logic against the emulator: each test names the behaviour it protects."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.unit.rollback_world import ENDPOINT, MODEL, PREFIX, RUN_ID, alarm_event, build_world, use_emulated_aws

# lambda/rollback is on sys.path (rollback_world puts it there); mypy checks that folder on its own.
import rollback_logic  # type: ignore[import-not-found]  # isort: skip
from rollback_settings import Settings, aws_client  # type: ignore[import-not-found]  # isort: skip

CANDIDATE_5XX = f"{ENDPOINT}-candidate-5xx"


@pytest.fixture
def world(monkeypatch):
    use_emulated_aws(monkeypatch)
    with mock_aws():
        yield build_world()
    aws_client.cache_clear()


def _settings(world) -> Settings:
    return Settings.from_env(world.environ)


def _alarm(name: str = CANDIDATE_5XX, state: str = "ALARM") -> rollback_logic.Alarm:
    detail = alarm_event(name, state)["detail"]
    return rollback_logic.Alarm(
        name=name,
        state=state,
        reason=detail["state"]["reason"],
        arn=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
        changed_at=detail["state"]["timestamp"],
    )


def _roll_back(world, name: str = CANDIDATE_5XX, state: str = "ALARM") -> rollback_logic.RollbackReport:
    return rollback_logic.roll_back(_alarm(name, state), settings=_settings(world), clients=world.clients)


def _record_key(phase: str) -> str:
    return f"models/{MODEL}/{RUN_ID}/rollbacks/{ENDPOINT}-{phase}.json"


def test_alarm_during_canary_sets_candidate_weight_0_and_baseline_100(world):
    world.deploy(phase="canary")
    report = _roll_back(world)
    assert report.outcome == "rolled-back", report
    assert world.weights() == {"baseline": 100.0, "candidate": 0.0}
    assert report.action == {"type": "shift-traffic", "weights": {"candidate": 0.0, "baseline": 100.0}}
    assert world.tags()["llmq:phase"] == "rolled-back"
    assert report.seconds_to_traffic_call is not None
    assert world.sagemaker.update_endpoint_calls == []


def test_composite_alarm_also_rolls_back(world):
    world.deploy(phase="canary")
    assert _roll_back(world, f"{ENDPOINT}-canary").outcome == "rolled-back"
    assert world.weights() == {"baseline": 100.0, "candidate": 0.0}


def test_rollback_record_written_next_to_the_run_artifacts(world):
    world.deploy(phase="canary")
    report = _roll_back(world)
    records = world.rollback_records()
    assert list(records) == [_record_key("canary")]
    record = records[_record_key("canary")]
    assert report.record_uri == f"s3://{world.environ['ARTIFACT_BUCKET']}/{_record_key('canary')}"
    assert record["status"] == "done"
    assert record["alarm"]["name"] == CANDIDATE_5XX
    assert record["alarm"]["changed_at"] == "2025-01-01T00:00:00.000+0000"
    assert record["who"]["function"] == f"{PREFIX}-rollback"
    assert record["phase_before"] == "canary"
    assert record["action"]["weights"] == {"candidate": 0.0, "baseline": 100.0}
    assert record["model_package"] == {"arn": world.package_arn, "status": "Rejected"}
    assert record["completed_at"] >= record["claimed_at"]
    # The claim ("in-progress") survives as the previous version of the object.
    versions = world.s3.list_object_versions(Bucket=world.environ["ARTIFACT_BUCKET"], Prefix=_record_key("canary"))
    assert len(versions["Versions"]) == 2


def test_model_package_rejected_with_rollback_metadata(world):
    world.deploy(phase="canary")
    _roll_back(world)
    package = world.sagemaker.describe_model_package(ModelPackageName=world.package_arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert CANDIDATE_5XX in package["ApprovalDescription"]
    metadata = package["CustomerMetadataProperties"]
    assert metadata["llmq:rollback-alarm"] == CANDIDATE_5XX
    assert metadata["llmq:rollback-record"].endswith(_record_key("canary"))


def test_rollback_published_to_sns(world):
    world.deploy(phase="canary")
    report = _roll_back(world)
    [message] = world.notifications()
    assert message["Subject"] == f"[{PREFIX}] rollback rolled-back: {ENDPOINT}"
    body = json.loads(message["Message"])
    assert body["outcome"] == "rolled-back"
    assert body["endpoint"] == ENDPOINT
    assert body["record_uri"] == report.record_uri
    assert message["MessageAttributes"]["outcome"]["Value"] == "rolled-back"


def test_after_promotion_restores_last_approved_config(world):
    world.deploy(phase="promoted")
    before = world.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    report = _roll_back(world, f"{ENDPOINT}-candidate-latency-p95")
    assert report.outcome == "rolled-back", report
    approved = f"{PREFIX}-{MODEL}-{RUN_ID}-approved"
    assert world.sagemaker.update_endpoint_calls == [
        {"EndpointName": ENDPOINT, "EndpointConfigName": approved, "RetainAllVariantProperties": False}
    ]
    assert world.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == approved
    assert world.weights() == {"baseline": 1.0}
    assert report.action == {"type": "restore-config", "from": before, "to": approved}
    record = world.rollback_records()[_record_key("promoted")]
    assert record["endpoint_config_before"] == before
    assert record["status"] == "done"
    assert world.tags()["llmq:phase"] == "rolled-back"
    assert world.sagemaker.describe_model_package(ModelPackageName=world.package_arn)["ModelApprovalStatus"] == (
        "Rejected"
    )


def test_same_event_twice_rolls_back_once(world):
    world.deploy(phase="canary")
    first, second = _roll_back(world), _roll_back(world)
    # The second sees the endpoint tagged rolled-back; had it raced the first, the claim stops it
    # (test_two_alarms_at_once_roll_back_once, test_live_in_progress_claim_is_respected).
    assert first.outcome == "rolled-back"
    assert second.outcome in {"duplicate", "ignored"}
    assert len(world.notifications()) == 1
    assert len(world.rollback_records()) == 1


def test_two_alarms_at_once_roll_back_once(world):
    world.deploy(phase="canary")
    calls = []
    real = world.sagemaker._client.update_endpoint_weights_and_capacities

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    world.sagemaker._client.update_endpoint_weights_and_capacities = counting
    names = [f"{ENDPOINT}-candidate-{s}" for s in ("5xx", "4xx", "latency-p95", "quality")] + [f"{ENDPOINT}-canary"]
    barrier = threading.Barrier(len(names))
    reports: list[rollback_logic.RollbackReport] = []

    def run(name: str) -> None:
        barrier.wait()
        reports.append(_roll_back(world, name))

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    outcomes = sorted(r.outcome for r in reports)
    assert outcomes.count("rolled-back") == 1, outcomes
    assert len(calls) == 1
    # Later alarms of a finished rollback see the endpoint rolled back (or the claim).
    assert set(outcomes) <= {"rolled-back", "duplicate", "ignored"}
    assert len(world.notifications()) == 1


def test_missing_endpoint_is_reported_not_raised(world, caplog):
    caplog.set_level(logging.INFO, logger="rollback.logic")
    report = _roll_back(world, f"{PREFIX}-gone-candidate-5xx")
    assert report.outcome == "endpoint-missing"
    assert report.endpoint == f"{PREFIX}-gone"
    assert any(r.levelno == logging.ERROR and "does not exist" in r.getMessage() for r in caplog.records)
    [message] = world.notifications()
    assert json.loads(message["Message"])["outcome"] == "endpoint-missing"


def test_missing_candidate_variant_is_reported_not_raised(world):
    world.create_config("llmq-dev-single", {"baseline": 1.0})
    world.sagemaker.create_endpoint(
        EndpointName=ENDPOINT,
        EndpointConfigName="llmq-dev-single",
        Tags=[
            {"Key": "llmq:phase", "Value": "canary"},
            {"Key": "llmq:model-name", "Value": MODEL},
            {"Key": "llmq:run-id", "Value": RUN_ID},
        ],
    )
    report = _roll_back(world)
    assert report.outcome == "not-possible"
    assert "no variant candidate" in report.detail
    assert world.rollback_records()[_record_key("canary")]["status"] == "not-possible"
    assert json.loads(world.notifications()[0]["Message"])["outcome"] == "not-possible"
    # A second alarm for the same incident does not notify again.
    assert _roll_back(world).outcome == "duplicate"


def test_promoted_without_last_approved_config_is_reported(world):
    world.deploy(phase="promoted", tags={"llmq:last-approved-config": None})
    report = _roll_back(world)
    assert report.outcome == "not-possible"
    assert "llmq:last-approved-config" in report.detail
    assert world.sagemaker.update_endpoint_calls == []


def test_promoted_with_deleted_last_approved_config_is_reported(world):
    world.deploy(phase="promoted")
    world.sagemaker.delete_endpoint_config(EndpointConfigName=f"{PREFIX}-{MODEL}-{RUN_ID}-approved")
    report = _roll_back(world)
    assert report.outcome == "not-possible"
    assert "no longer exists" in report.detail


def test_untagged_endpoint_is_ignored_and_untracked_run_reported(world):
    world.deploy(phase="canary", tags={"llmq:phase": None})
    assert _roll_back(world).outcome == "ignored"
    assert world.weights() == {"baseline": 95.0, "candidate": 5.0}


def test_rolled_back_endpoint_is_not_rolled_back_again(world):
    world.deploy(phase="canary")
    _roll_back(world)
    world.notifications()
    report = _roll_back(world, f"{ENDPOINT}-candidate-4xx")
    assert report.outcome == "ignored"
    assert "rolled-back" in report.detail
    assert world.notifications() == []


def test_baseline_alarm_does_not_shift_traffic_onto_the_baseline(world):
    world.deploy(phase="canary")
    report = _roll_back(world, f"{ENDPOINT}-baseline-latency-p95")
    assert report.outcome == "ignored"
    assert world.weights() == {"baseline": 95.0, "candidate": 5.0}


def test_ok_state_and_foreign_alarms_are_ignored(world):
    world.deploy(phase="canary")
    assert _roll_back(world, state="OK").outcome == "ignored"
    assert _roll_back(world, "someone-elses-alarm").outcome == "ignored"
    assert _roll_back(world, f"{ENDPOINT}-candidate-unknown-signal").outcome == "ignored"
    assert world.weights() == {"baseline": 95.0, "candidate": 5.0}
    assert world.rollback_records() == {}


def test_transient_failure_frees_the_claim_for_the_retry(world):
    world.deploy(phase="canary")
    real = world.sagemaker._client.update_endpoint_weights_and_capacities

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateWeights")

    world.sagemaker._client.update_endpoint_weights_and_capacities = throttled
    with pytest.raises(ClientError):
        _roll_back(world)
    assert world.rollback_records()[_record_key("canary")]["status"] == "failed"
    world.sagemaker._client.update_endpoint_weights_and_capacities = real
    retried = _roll_back(world)
    assert retried.outcome == "rolled-back"
    assert world.weights() == {"baseline": 100.0, "candidate": 0.0}
    assert world.rollback_records()[_record_key("canary")]["takes_over"] == "failed"


def test_stale_in_progress_claim_is_taken_over(world):
    world.deploy(phase="canary")
    stale = {"status": "in-progress", "claimed_at_epoch": 0}
    world.s3.put_object(Bucket=world.environ["ARTIFACT_BUCKET"], Key=_record_key("canary"), Body=json.dumps(stale))
    assert _roll_back(world).outcome == "rolled-back"
    assert world.rollback_records()[_record_key("canary")]["takes_over"] == "in-progress"


def test_live_in_progress_claim_is_respected(world):
    world.deploy(phase="canary")
    live = {"status": "in-progress", "claimed_at_epoch": 10**10}
    world.s3.put_object(Bucket=world.environ["ARTIFACT_BUCKET"], Key=_record_key("canary"), Body=json.dumps(live))
    assert _roll_back(world).outcome == "duplicate"
    assert world.weights() == {"baseline": 95.0, "candidate": 5.0}


def test_endpoint_for_alarm_prefers_the_longest_endpoint_name():
    settings = Settings.from_env(
        {
            "ARTIFACT_BUCKET": "b-1",
            "ROLLBACK_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
            "RESOURCE_PREFIX": PREFIX,
            "MONITORED_ENDPOINTS": "llmq-dev-chat, llmq-dev-chat-2",
        }
    )
    assert rollback_logic.endpoint_for_alarm("llmq-dev-chat-2-candidate-5xx", settings) == (
        "llmq-dev-chat-2",
        "candidate",
    )
    assert rollback_logic.endpoint_for_alarm("llmq-dev-chat-candidate-5xx", settings) == ("llmq-dev-chat", "candidate")
    assert rollback_logic.endpoint_for_alarm("llmq-dev-chat-canary", settings) == ("llmq-dev-chat", None)
    assert rollback_logic.endpoint_for_alarm("llmq-dev-chat-baseline-4xx", settings) == ("llmq-dev-chat", "baseline")
    assert rollback_logic.endpoint_for_alarm("llmq-dev-other-candidate-5xx", settings) is None


def test_settings_reject_a_missing_bucket():
    with pytest.raises(ValueError, match="ARTIFACT_BUCKET"):
        Settings.from_env({"ROLLBACK_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "RESOURCE_PREFIX": "p"})
