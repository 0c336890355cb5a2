"""The rollback logic against the emulator: each test names the behaviour it protects."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.unit.rollback_world import (
    BUCKET,
    CANDIDATE,
    ENDPOINT,
    MODEL,
    PREFIX,
    RUN_ID,
    SERVING,
    alarm_event,
    build_world,
    use_emulated_aws,
)

# lambda/rollback is on sys.path (rollback_world puts it there); mypy checks that folder on its own.
import rollback_logic  # type: ignore[import-not-found]  # isort: skip
import rollback_model  # type: ignore[import-not-found]  # isort: skip
import rollback_triage  # type: ignore[import-not-found]  # isort: skip
from rollback_settings import Settings, aws_client  # type: ignore[import-not-found]  # isort: skip

CANDIDATE_5XX = f"{ENDPOINT}-candidate-5xx"
SERVING_5XX = f"{ENDPOINT}-baseline-5xx"  # the serving variant's alarm keeps the role word in its name
CANARY_WEIGHTS = {SERVING: 95.0, CANDIDATE: 5.0}
ROLLED_BACK_WEIGHTS = {SERVING: 100.0, CANDIDATE: 0.0}


class FakeTime:
    """The injected clock and sleep: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def world(monkeypatch):
    use_emulated_aws(monkeypatch)
    with mock_aws():
        yield build_world()
    aws_client.cache_clear()


def _settings(world) -> Settings:
    return Settings.from_environment(world.environ)


def _alarm(name: str = CANDIDATE_5XX, state: str = "ALARM") -> rollback_model.Alarm:
    detail = alarm_event(name, state)["detail"]
    return rollback_model.Alarm(
        name=name,
        state=state,
        reason=detail["state"]["reason"],
        arn=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
        changed_at=detail["state"]["timestamp"],
    )


def _roll_back(
    world, name: str = CANDIDATE_5XX, state: str = "ALARM", fake: FakeTime | None = None, **env: str
) -> rollback_model.RollbackReport:
    fake = fake or FakeTime()
    return rollback_logic.roll_back(
        _alarm(name, state),
        settings=Settings.from_environment({**world.environ, **env}),
        clients=world.clients,
        clock=fake.clock,
        sleep=fake.sleep,
    )


def _record_key(phase: str) -> str:
    return f"models/{MODEL}/{RUN_ID}/rollbacks/{ENDPOINT}-{phase}.json"


def test_alarm_during_canary_tags_rolling_back_first_then_moves_weights_and_confirms(world):
    world.deploy(phase="canary")
    report = _roll_back(world)
    assert report.outcome == "rolled-back", report
    assert world.weights() == ROLLED_BACK_WEIGHTS
    assert report.action["type"] == "shift-traffic"
    assert report.action["weights"] == {CANDIDATE: 0.0, SERVING: 100.0}
    # Checked after InService: what SageMaker reports, not what was asked for.
    assert report.action["observed_weights"] == ROLLED_BACK_WEIGHTS
    kinds = [kind for kind, _ in world.sagemaker.events]
    assert kinds == ["AddTags", "UpdateEndpointWeightsAndCapacities", "AddTags"]
    assert world.sagemaker.events[0][1] == {"llmq:phase": "rolling-back", "llmq:rollback-from-phase": "canary"}
    assert world.sagemaker.events[-1][1] == {"llmq:phase": "rolled-back"}
    assert world.tags()["llmq:phase"] == "rolled-back"
    assert report.seconds_to_traffic_call is not None
    assert world.sagemaker.update_endpoint_calls == []


def test_rolled_back_only_after_the_weights_are_in_service(world):
    # The weights call leaves the endpoint Updating (old CurrentWeight) for some polls.
    world.deploy(phase="canary")
    world.sagemaker.updating_polls = 4
    fake = FakeTime()
    report = _roll_back(world, fake=fake)
    assert report.outcome == "rolled-back"
    assert fake.sleeps == [5.0] * 4
    assert report.action["observed_weights"] == ROLLED_BACK_WEIGHTS


def test_endpoint_updating_when_the_alarm_arrives_waits_then_acts(world):
    world.deploy(phase="canary")
    # The state machine's own weights step is in flight: a change now would be refused.
    world.sagemaker.hold_updating(ENDPOINT, polls=3)
    fake = FakeTime()
    report = _roll_back(world, fake=fake)
    assert report.outcome == "rolled-back", report
    assert world.weights() == ROLLED_BACK_WEIGHTS
    # 1 poll by the first read, 2 more in the wait, then the weights call, then its own 2 polls.
    assert len(fake.sleeps) == 2 + 2
    assert world.sagemaker.events[0][0] == "AddTags"


def test_a_change_while_updating_is_refused_like_sagemaker_does(world):
    # The test world itself: the rollback must not rely on moto accepting this.
    world.deploy(phase="canary")
    world.sagemaker.hold_updating(ENDPOINT, polls=1)
    with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
        world.sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": CANDIDATE, "DesiredWeight": 0}]
        )


def test_creating_endpoint_is_waited_for_too(world):
    world.deploy(phase="canary")
    world.sagemaker.hold_updating(ENDPOINT, polls=2, status="Creating")
    assert _roll_back(world).outcome == "rolled-back"
    assert world.weights() == ROLLED_BACK_WEIGHTS


def test_endpoint_still_updating_at_the_deadline_frees_the_claim_for_the_retry(world):
    world.deploy(phase="canary")
    world.sagemaker.hold_updating(ENDPOINT, polls=100)
    with pytest.raises(rollback_model.EndpointBusyError, match="still Updating"):
        _roll_back(world)
    assert world.rollback_records()[_record_key("canary")]["status"] == "failed"
    assert world.tags()["llmq:phase"] == "rolling-back"
    assert world.sagemaker.weight_calls == []
    # The retry (Lambda's, or the next alarm) takes the claim over and finishes.
    world.sagemaker.hold_updating(ENDPOINT, polls=1)
    retried = _roll_back(world)
    assert retried.outcome == "rolled-back"
    assert world.rollback_records()[_record_key("canary")]["attempt"] == 2
    assert world.weights() == ROLLED_BACK_WEIGHTS


def test_promotion_racing_the_alarm_restores_the_last_approved_config(world):
    world.deploy(phase="canary")
    # The state machine's promotion UpdateEndpoint is under way when the alarm arrives.
    world.sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=world.promoted_config())
    report = _roll_back(world, f"{ENDPOINT}-canary")
    assert report.outcome == "rolled-back", report
    approved = f"{PREFIX}-{MODEL}-{RUN_ID}-approved"
    assert [c["EndpointConfigName"] for c in world.sagemaker.update_endpoint_calls] == [
        world.promoted_config(),
        approved,
    ]
    assert report.action["type"] == "restore-config"
    assert report.action["from"] == world.promoted_config()
    assert "raced" in report.action["note"]
    assert world.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == approved
    assert world.weights() == {SERVING: 1.0}
    assert world.sagemaker.weight_calls == []
    assert world.tags()["llmq:phase"] == "rolled-back"


def test_failed_promotion_racing_the_alarm_shifts_weights_on_the_canary_config(world):
    world.deploy(phase="canary")
    world.sagemaker.fail_next_update_endpoint("Model container failed the ping health check")
    world.sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=world.promoted_config())
    report = _roll_back(world)
    assert report.outcome == "rolled-back", report
    assert report.action["type"] == "shift-traffic"
    assert world.weights() == ROLLED_BACK_WEIGHTS


def test_composite_alarm_also_rolls_back(world):
    world.deploy(phase="canary")
    assert _roll_back(world, f"{ENDPOINT}-canary").outcome == "rolled-back"
    assert world.weights() == ROLLED_BACK_WEIGHTS


def test_rollback_record_written_next_to_the_run_artifacts(world):
    world.deploy(phase="canary")
    report = _roll_back(world)
    records = world.rollback_records()
    assert list(records) == [_record_key("canary")]
    record = records[_record_key("canary")]
    assert report.record_uri == f"s3://{world.environ['ARTIFACT_BUCKET']}/{_record_key('canary')}"
    assert record["status"] == "done"
    assert record["attempt"] == 1
    assert record["alarm"]["name"] == CANDIDATE_5XX
    assert record["alarm"]["changed_at"] == "2025-01-01T00:00:00.000+0000"
    assert record["who"]["function"] == f"{PREFIX}-rollback"
    assert record["phase_before"] == "canary"
    assert record["action"]["weights"] == {CANDIDATE: 0.0, SERVING: 100.0}
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


def test_after_promotion_restores_the_platform_teams_config_whatever_its_name(world):
    world.deploy(phase="promoted", approved_config="chat-bf16-v1-config")
    before = world.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "rolled-back", report
    assert world.sagemaker.update_endpoint_calls == [
        {"EndpointName": ENDPOINT, "EndpointConfigName": "chat-bf16-v1-config", "RetainAllVariantProperties": False}
    ]
    assert world.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == "chat-bf16-v1-config"
    assert world.weights() == {SERVING: 1.0}
    assert (report.action["type"], report.action["from"], report.action["to"]) == (
        "restore-config",
        before,
        "chat-bf16-v1-config",
    )
    record = world.rollback_records()[_record_key("promoted")]
    assert record["endpoint_config_before"] == before
    assert record["status"] == "done"
    assert [kind for kind, _ in world.sagemaker.events] == ["AddTags", "UpdateEndpoint", "AddTags"]
    assert world.tags()["llmq:phase"] == "rolled-back"
    assert world.sagemaker.describe_model_package(ModelPackageName=world.package_arn)["ModelApprovalStatus"] == (
        "Rejected"
    )


def test_restore_still_updating_at_the_deadline_raises_for_the_retry_then_completes(world):
    world.deploy(phase="promoted")
    world.sagemaker.updating_polls = 15  # a blue/green replacement takes longer than one invocation waits
    with pytest.raises(rollback_model.EndpointBusyError):
        _roll_back(world, SERVING_5XX)
    assert world.rollback_records()[_record_key("promoted")]["status"] == "failed"
    assert world.tags()["llmq:phase"] == "rolling-back"
    retried = _roll_back(world, SERVING_5XX)  # the retry keeps waiting; UpdateEndpoint is not repeated
    assert retried.outcome == "rolled-back", retried
    assert len(world.sagemaker.update_endpoint_calls) == 1
    assert world.tags()["llmq:phase"] == "rolled-back"


def test_restore_onto_another_instance_type_lifts_autoscaling_and_a_retry_still_puts_it_back(world):
    """SageMaker refuses an instance-type change of an autoscaled variant; the lifted setup survives a retry."""
    world.instance_types["chat-bf16-v1-config"] = "ml.g4dn.12xlarge"  # the team's; promotion moved to 2xlarge
    world.deploy(phase="promoted", approved_config="chat-bf16-v1-config")
    autoscaling = world.clients.autoscaling
    one = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{ENDPOINT}/variant/{SERVING}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    autoscaling.register_scalable_target(**one, MinCapacity=1, MaxCapacity=4)
    tracking = {
        "TargetValue": 50.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
    }
    autoscaling.put_scaling_policy(
        **one, PolicyName="p", PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration=tracking
    )
    world.sagemaker.updating_polls = 15  # longer than one invocation waits
    with pytest.raises(rollback_model.EndpointBusyError):
        _roll_back(world, SERVING_5XX)
    record = world.rollback_records()[_record_key("promoted")]
    # Deregistered for the update, and what to put back is in the record, not only in memory.
    assert autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert record["autoscaling"]["min_capacity"] == 1 and record["autoscaling"]["max_capacity"] == 4

    retried = _roll_back(world, SERVING_5XX)
    assert retried.outcome == "rolled-back", retried
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (one["ResourceId"], 1, 4)
    (policy,) = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["TargetTrackingScalingPolicyConfiguration"] == tracking
    assert retried.action_notes == [
        f"autoscaling of {one['ResourceId']} lifted for the restore",
        f"autoscaling of {one['ResourceId']} restored",
    ]
    assert world.rollback_records()[_record_key("promoted")]["autoscaling_restored"]["policies"] == ["p"]


def test_scaling_a_stopped_promotion_left_lifted_is_restored_with_the_rollback(world):
    """The state machine lifted the target and was stopped before putting it back: the record says so."""
    import endpoint_autoscaling  # lambda/shared, on sys.path through rollback_world

    world.instance_types["chat-bf16-v1-config"] = "ml.g4dn.12xlarge"
    world.deploy(phase="promoted", approved_config="chat-bf16-v1-config")
    resource = f"endpoint/{ENDPOINT}/variant/{SERVING}"
    captured = {
        "resource_id": resource,
        "min_capacity": 2,
        "max_capacity": 5,
        "suspended_state": {},
        "policies": [],
        "scheduled_actions": [],
        "blockers": [],
    }
    key = f"models/{MODEL}/{RUN_ID}/autoscaling/{ENDPOINT}-{SERVING}.json"
    endpoint_autoscaling.write_record(world.s3, BUCKET, key, captured, restored=False)

    report = _roll_back(world, SERVING_5XX)

    assert report.outcome == "rolled-back", report
    (target,) = world.clients.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (resource, 2, 5)
    assert json.loads(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["restored"] is True


def test_restore_onto_the_same_instance_type_leaves_autoscaling_alone(world):
    """A model-only change is allowed on an autoscaled variant: nothing is deregistered."""
    world.deploy(phase="promoted")
    autoscaling = world.clients.autoscaling
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{ENDPOINT}/variant/{SERVING}",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=4,
    )
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "rolled-back", report
    assert report.action_notes == []
    assert "autoscaling" not in world.rollback_records()[_record_key("promoted")]


def test_restore_still_updating_on_the_last_attempt_is_reported_rollback_failed(world):
    world.deploy(phase="promoted")
    world.sagemaker.updating_polls = 1000
    with pytest.raises(rollback_model.EndpointBusyError):
        _roll_back(world, SERVING_5XX, MAX_ATTEMPTS="2")
    report = _roll_back(world, SERVING_5XX, MAX_ATTEMPTS="2")
    assert report.outcome == "rollback-failed"
    assert "gave up on attempt 2 of 2" in report.detail
    assert world.tags()["llmq:phase"] == "rollback-failed"


def test_failed_restore_is_rollback_failed_notified_and_the_function_stays_armed(world):
    world.deploy(phase="promoted")
    world.sagemaker.fail_next_update_endpoint("Insufficient capacity for ml.g5.2xlarge")
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "rollback-failed", report
    assert "Insufficient capacity" in report.detail
    promoted = world.promoted_config()
    assert world.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == promoted
    assert world.tags()["llmq:phase"] == "rollback-failed"
    assert world.rollback_records()[_record_key("promoted")]["status"] == "rollback-failed"
    [message] = world.notifications()
    assert json.loads(message["Message"])["outcome"] == "rollback-failed"
    assert "Insufficient capacity" in json.loads(message["Message"])["detail"]
    # Still armed: the next alarm tries again (and this time the restore works).
    again = _roll_back(world, f"{ENDPOINT}-baseline-4xx")
    assert again.outcome == "rolled-back", again
    assert len(world.sagemaker.update_endpoint_calls) == 2
    assert world.tags()["llmq:phase"] == "rolled-back"
    assert world.rollback_records()[_record_key("promoted")]["takes_over"] == "rollback-failed"


def test_promoted_longer_ago_than_the_window_is_not_rolled_back(world):
    world.deploy(phase="promoted", tags={"llmq:promoted-at": "2020-01-01T00:00:00+00:00"})
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "outside-window"
    assert world.sagemaker.update_endpoint_calls == []
    assert json.loads(world.notifications()[0]["Message"])["outcome"] == "outside-window"
    # 0 means forever.
    assert _roll_back(world, SERVING_5XX, PROMOTED_ROLLBACK_WINDOW_SECONDS="0").outcome == "rolled-back"


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
    names = [f"{ENDPOINT}-candidate-{s}" for s in ("5xx", "4xx", "latency-p95-vs-baseline", "quality")] + [
        f"{ENDPOINT}-canary"
    ]
    barrier = threading.Barrier(len(names))
    reports: list[rollback_model.RollbackReport] = []

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
    assert len(world.sagemaker.weight_calls) == 1
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


def _canary_endpoint_without_last_approved(world, config: str, variants: dict[str, float]) -> None:
    """An endpoint in phase canary on ``config``, tagged with its run but no last approved config."""
    world.create_config(config, variants)
    world.sagemaker.create_endpoint(
        EndpointName=ENDPOINT,
        EndpointConfigName=config,
        Tags=[
            {"Key": "llmq:phase", "Value": "canary"},
            {"Key": "llmq:model-name", "Value": MODEL},
            {"Key": "llmq:run-id", "Value": RUN_ID},
        ],
    )


def test_canary_endpoint_without_a_config_to_restore_is_reported_not_raised(world):
    # One variant in phase canary reads as a raced promotion; without llmq:last-approved-config
    # there is nothing to restore.
    _canary_endpoint_without_last_approved(world, "llmq-dev-single", {SERVING: 1.0})
    report = _roll_back(world)
    assert report.outcome == "not-possible"
    assert "no llmq:last-approved-config tag" in report.detail
    assert world.rollback_records()[_record_key("canary")]["status"] == "not-possible"
    assert json.loads(world.notifications()[0]["Message"])["outcome"] == "not-possible"
    assert world.tags()["llmq:phase"] == "rollback-failed"
    # A second alarm for the same incident does not notify again.
    assert _roll_back(world).outcome == "duplicate"


def test_canary_endpoint_with_foreign_variants_is_reported(world):
    _canary_endpoint_without_last_approved(world, "llmq-dev-odd", {"blue": 50.0, "green": 50.0})
    report = _roll_back(world)
    assert report.outcome == "not-possible"
    assert f"neither both variants {SERVING} and candidate" in report.detail
    assert world.sagemaker.weight_calls == []


def test_promoted_without_last_approved_config_is_reported(world):
    world.deploy(phase="promoted", tags={"llmq:last-approved-config": None})
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "not-possible"
    assert "llmq:last-approved-config" in report.detail
    assert world.sagemaker.update_endpoint_calls == []


def test_promoted_with_deleted_last_approved_config_is_reported(world):
    world.deploy(phase="promoted")
    world.sagemaker.delete_endpoint_config(EndpointConfigName=f"{PREFIX}-{MODEL}-{RUN_ID}-approved")
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "not-possible"
    assert "no longer exists" in report.detail


def test_untagged_endpoint_is_ignored(world):
    world.deploy(phase="canary", tags={"llmq:phase": None})
    assert _roll_back(world).outcome == "ignored"
    assert world.weights() == CANARY_WEIGHTS


def test_candidate_alarm_while_the_candidate_is_evaluated_at_weight_0_is_left_to_the_state_machine(world):
    """Phase evaluating: no user sees the candidate, the load test may trip its alarms, the gate decides."""
    world.deploy(phase="canary", tags={"llmq:phase": "evaluating"})
    for alarm in (CANDIDATE_5XX, f"{ENDPOINT}-canary", f"{ENDPOINT}-candidate-latency-p95-vs-baseline"):
        report = _roll_back(world, alarm)
        assert report.outcome == "ignored", alarm
        assert "evaluating" in report.detail
    assert world.weights() == CANARY_WEIGHTS
    assert world.sagemaker.update_endpoint_calls == []
    assert world.tags()["llmq:phase"] == "evaluating"
    assert world.notifications() == []
    listed = world.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"models/{MODEL}/{RUN_ID}/rollbacks/")
    assert listed.get("KeyCount", 0) == 0


def test_rolled_back_endpoint_is_not_rolled_back_again(world):
    world.deploy(phase="canary")
    _roll_back(world)
    world.notifications()
    report = _roll_back(world, f"{ENDPOINT}-candidate-4xx")
    assert report.outcome == "ignored"
    assert "rolled-back" in report.detail
    assert world.notifications() == []


def test_serving_variant_alarm_during_a_canary_does_not_shift_traffic_onto_it(world):
    world.deploy(phase="canary")
    report = _roll_back(world, SERVING_5XX)
    assert report.outcome == "ignored"
    assert world.weights() == CANARY_WEIGHTS
    assert world.tags()["llmq:phase"] == "canary"


def test_absolute_latency_alarms_only_notify(world):
    world.deploy(phase="canary")
    assert _roll_back(world, f"{ENDPOINT}-candidate-latency-p95").outcome == "ignored"
    world.deploy(phase="promoted", endpoint=f"{PREFIX}-gone")
    assert _roll_back(world, f"{PREFIX}-gone-baseline-latency-p95").outcome == "ignored"
    assert world.weights() == CANARY_WEIGHTS
    assert world.sagemaker.update_endpoint_calls == []


def test_ok_state_and_foreign_alarms_are_ignored(world):
    world.deploy(phase="canary")
    assert _roll_back(world, state="OK").outcome == "ignored"
    assert _roll_back(world, "someone-elses-alarm").outcome == "ignored"
    assert _roll_back(world, f"{ENDPOINT}-candidate-unknown-signal").outcome == "ignored"
    assert world.weights() == CANARY_WEIGHTS
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
    assert world.weights() == ROLLED_BACK_WEIGHTS
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
    assert world.weights() == CANARY_WEIGHTS
    assert world.tags()["llmq:phase"] == "canary"


def test_endpoint_for_alarm_prefers_the_longest_endpoint_name():
    settings = Settings.from_environment(
        {
            "ARTIFACT_BUCKET": "b-1",
            "ROLLBACK_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
            "RESOURCE_PREFIX": PREFIX,
            "MONITORED_ENDPOINTS": '["llmq-dev-chat", "llmq-dev-chat-2"]',
        }
    )
    assert rollback_triage.endpoint_for_alarm("llmq-dev-chat-2-candidate-5xx", settings) == (
        "llmq-dev-chat-2",
        "candidate",
        "5xx",
    )
    assert rollback_triage.endpoint_for_alarm("llmq-dev-chat-candidate-5xx", settings) == (
        "llmq-dev-chat",
        "candidate",
        "5xx",
    )
    assert rollback_triage.endpoint_for_alarm("llmq-dev-chat-canary", settings) == ("llmq-dev-chat", None, None)
    # The role word, whatever the serving variant is called (BASELINE_VARIANT).
    assert rollback_triage.endpoint_for_alarm("llmq-dev-chat-baseline-4xx", settings) == (
        "llmq-dev-chat",
        "baseline",
        "4xx",
    )
    assert rollback_triage.endpoint_for_alarm("llmq-dev-other-candidate-5xx", settings) is None


def test_settings_reject_a_missing_bucket():
    with pytest.raises(ValueError, match="ARTIFACT_BUCKET"):
        Settings.from_environment({"ROLLBACK_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "RESOURCE_PREFIX": "p"})
