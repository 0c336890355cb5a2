"""Executed scenarios of AWS as it really behaves (the harness models each rule, docs/aws-behaviour.md).

Each asserts what happened to the resources: endpoint config and variants,
tags, package status, what still bills.
"""

from __future__ import annotations

import json

from tests.aws_conformance.iam import PolicyEvaluator
from tests.workflow.conftest import BASELINE_CONFIG, BASELINE_ENDPOINT, SERVING_VARIANT, sm_backend
from tests.workflow.harness import run_execution

CANARY_CONFIG = "llmq-dev-llama-8b-run-001"
PROMOTED_CONFIG = "llmq-dev-llama-8b-run-001-promoted"
GROUP = "llmq-dev-llama-8b"


def _package_status(account) -> str:
    (summary,) = account.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return account.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])["ModelApprovalStatus"]


def _endpoint(account) -> tuple[str, list[str]]:
    described = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    return described["EndpointConfigName"], [v["VariantName"] for v in described["ProductionVariants"]]


def _serving_alarm_after_promotion(account) -> dict:
    """After promotion the serving variant's own alarms guard it: one fires, the rollback function acts."""
    alarm = f"{BASELINE_ENDPOINT}-baseline-5xx"
    account.cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="5xx after promotion")
    account.shims.pending_alarm = alarm
    account.shims.deliver_pending_alarm()
    (handled,) = account.shims.rollback_results
    return dict(handled)


def _never_promoted(account) -> None:
    assert all(c["endpoint_config_name"] != PROMOTED_CONFIG for c in account.calls.of("update_endpoint"))
    assert account.endpoint_tags().get("llmq:phase") != "promoted"


def test_alarm_that_the_rollback_function_handles_and_that_clears_before_the_bake_ends_still_stops_the_run(account):
    """The race: the function moves traffic, the alarm returns to OK, the loop must not raise weights again."""
    account.faults.alarm_name = f"{BASELINE_ENDPOINT}-candidate-5xx"
    account.faults.alarm_at_candidate_weight = 10
    account.faults.rollback_function_acts = True
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="race")

    assert execution.status == "FAILED"
    (handled,) = account.shims.rollback_results
    assert handled["outcome"] == "rolled-back", handled
    # The alarm is OK again, yet the run saw it (phase tag and alarm history) and never went past 10 %.
    state = account.cloudwatch.describe_alarms(AlarmNames=[account.faults.alarm_name])["MetricAlarms"][0]
    assert state["StateValue"] == "OK"
    weights = [
        {w["VariantName"]: w["DesiredWeight"] for w in c["desired_weights_and_capacities"]}
        for c in account.calls.of("update_endpoint_weights_and_capacities")
    ]
    assert max(w["candidate"] for w in weights) == 10
    _never_promoted(account)
    assert _package_status(account) == "Rejected"
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"


def test_candidate_that_fails_to_start_leaves_the_endpoint_on_the_baseline_and_rejects_the_package(account):
    """A failed UpdateEndpoint returns InService on the OLD config with FailureReason: not a success."""
    reason = "The primary container for production variant candidate did not pass the ping health check."
    account.faults.failing_configs[CANARY_CONFIG] = reason
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="no-start")

    assert execution.status == "FAILED"
    assert execution.error == "EndpointUpdateFailed"
    assert reason in execution.cause
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert account.calls.of("update_endpoint_weights_and_capacities") == []
    _never_promoted(account)
    assert _package_status(account) == "Rejected"
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"
    (message,) = account.notifications()
    assert message["outcome"] == "rolled-back"


def test_endpoint_busy_updating_when_the_canary_starts_is_waited_for_then_the_run_goes_on(account):
    endpoint = sm_backend().endpoints[BASELINE_ENDPOINT]
    account.shims.world.set_updating(endpoint, polls=4)
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="busy")

    assert execution.status == "SUCCEEDED", execution.cause
    entered = execution.states_entered()
    assert "Before canary wait" in entered
    # The deployment came only after the wait: no mutation was refused as in progress.
    assert entered.index("Deploy canary") > entered.index("Before canary wait")
    assert "Cannot update in-progress endpoint" not in json.dumps(execution.history, default=str)


def test_alarm_after_promotion_restores_the_platform_teams_own_config_whatever_its_name(account):
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="promote")
    assert execution.status == "SUCCEEDED", execution.cause
    assert _endpoint(account) == (PROMOTED_CONFIG, [SERVING_VARIANT])

    handled = _serving_alarm_after_promotion(account)
    assert handled["outcome"] == "rolled-back", handled
    assert BASELINE_CONFIG == "chat-bf16-v1-config"  # not a name of this stage's prefix
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"


def test_throttling_of_a_lookup_and_of_a_create_is_retried_under_the_real_names_and_the_run_succeeds(account):
    account.faults.throttle_once = {"describe_training_job", "create_endpoint_config"}
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="throttled")

    assert execution.status == "SUCCEEDED", execution.cause
    assert sorted(account.calls.throttled) == ["create_endpoint_config", "describe_training_job"]
    # Both surfaced as Step Functions names them for SageMaker: the SDK's base exception.
    assert execution.task_failures().count("SageMaker.AmazonSageMakerException") >= 2
    assert "training_job lookup throttled" in execution.states_entered()
    assert len(account.calls.of("create_training_job")) == 1
    assert len(account.calls.of("create_endpoint_config")) == 2  # canary and promoted, each once


def test_no_candidate_instance_bills_after_a_rollback(account):
    account.faults.alarm_name = f"{BASELINE_ENDPOINT}-candidate-5xx"
    account.faults.alarm_at_candidate_weight = 50
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="billing")
    assert execution.error == "CanaryAlarm"

    billed = account.instance_seconds("candidate")
    assert billed > 0  # it ran during the canary, at every weight
    assert "candidate" not in _endpoint(account)[1]
    account.shims.timeline.advance(24 * 3600)  # a day later
    assert account.instance_seconds("candidate") == billed


def test_no_candidate_instance_bills_after_a_failed_gate(account):
    """The candidate bills while it is evaluated at weight 0 (a fleet bills whatever its weight), then stops."""
    account.faults.gate_passed = False
    account.faults.gate_reasons = ["perplexity +9.1 % exceeds 5.0 %"]
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="gate")
    assert execution.error == "GateFailed"

    billed = account.instance_seconds("candidate")
    assert billed > 0  # it served the evaluation
    assert "candidate" not in _endpoint(account)[1]
    account.shims.timeline.advance(24 * 3600)
    assert account.instance_seconds("candidate") == billed
    assert len(account.calls.of("create_model")) == 1


def test_an_evaluate_role_that_may_not_invoke_the_endpoint_fails_the_job_and_the_candidate_is_removed(account):
    """AWS refuses InvokeEndpoint without sagemaker:InvokeEndpoint on the endpoint; the job fails, nothing stays."""
    arn = account.synthesized.evaluate_role_arn
    granted = account.synthesized.evaluate_role
    without_invoke = [
        s for s in granted.statements if not any(str(a).startswith("sagemaker:Invoke") for a in _as_list(s["Action"]))
    ]
    assert len(without_invoke) < len(granted.statements)
    account.shims.job_roles[arn] = PolicyEvaluator(without_invoke, name=granted.name)
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="no-invoke")

    assert execution.status == "FAILED"
    assert execution.error == "EvaluateJobFailed"
    assert "not authorized to perform: sagemaker:InvokeEndpoint" in execution.cause
    assert account.shims.invocations == []
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"
    assert _package_status(account) == "Rejected"
    _never_promoted(account)


def test_another_runs_candidate_under_evaluation_refuses_a_new_canary_before_anything_changes(account):
    """Phase evaluating is not guarded by the rollback function: only its own run may take it further."""
    arn = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)["EndpointArn"]
    account.sagemaker.add_tags(
        ResourceArn=arn,
        Tags=[
            {"Key": "llmq:phase", "Value": "evaluating"},
            {"Key": "llmq:run-id", "Value": "run-000"},
            {"Key": "llmq:last-approved-config", "Value": BASELINE_CONFIG},
        ],
    )
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="other-evaluating")

    assert execution.status == "FAILED"
    assert execution.error == "CanaryRefused"
    assert "evaluating" in execution.cause and "run-000" in execution.cause
    assert account.calls.of("update_endpoint") == []
    assert account.calls.of("create_processing_job") == []
    assert _package_status(account) == "Rejected"
    assert account.endpoint_tags()["llmq:phase"] == "evaluating"  # left as the other run has it


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_promotion_keeps_an_autoscaled_serving_variant_registered(account):
    """UpdateEndpoint fails if it removes or changes the instance type of an autoscaled variant."""
    autoscaling = account.autoscaling
    resource_id = f"endpoint/{BASELINE_ENDPOINT}/variant/{SERVING_VARIANT}"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=2,
        MaxCapacity=6,
    )
    # Serve the candidate on the serving variant's own instance type: only the model changes.
    spec = account.spec(serving_instance_type="ml.g4dn.12xlarge")
    execution = run_execution(account.sfn, account.state_machine_arn, spec, name="autoscaled")

    assert execution.status == "SUCCEEDED", execution.cause
    assert _endpoint(account) == (PROMOTED_CONFIG, [SERVING_VARIANT])
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id])
    assert len(targets["ScalableTargets"]) == 1


RESOURCE_ID = f"endpoint/{BASELINE_ENDPOINT}/variant/{SERVING_VARIANT}"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TARGET_TRACKING = {
    "TargetValue": 70.0,
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
    "ScaleInCooldown": 600,
    "ScaleOutCooldown": 120,
}


def _autoscale_serving_variant(account, *, policy_type: str = "TargetTrackingScaling") -> None:
    """The platform team's scaling: 2-6 instances, one policy, one scheduled action."""
    one = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE_ID, "ScalableDimension": DIMENSION}
    account.autoscaling.register_scalable_target(**one, MinCapacity=2, MaxCapacity=6)
    if policy_type == "TargetTrackingScaling":
        config = {"TargetTrackingScalingPolicyConfiguration": TARGET_TRACKING}
    else:
        config = {
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
                "Cooldown": 300,
            }
        }
    account.autoscaling.put_scaling_policy(**one, PolicyName="invocations", PolicyType=policy_type, **config)
    account.autoscaling.put_scheduled_action(
        **one,
        ScheduledActionName="business-hours",
        Schedule="cron(0 8 ? * MON-FRI *)",
        ScalableTargetAction={"MinCapacity": 3, "MaxCapacity": 6},
    )


def _scaling(account) -> tuple[list, list, list]:
    one = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE_ID, "ScalableDimension": DIMENSION}
    targets = account.autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[RESOURCE_ID], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    policies = account.autoscaling.describe_scaling_policies(**one)["ScalingPolicies"]
    scheduled = account.autoscaling.describe_scheduled_actions(**one)["ScheduledActions"]
    return (
        [(t["MinCapacity"], t["MaxCapacity"]) for t in targets],
        [(p["PolicyName"], p["PolicyType"], p.get("TargetTrackingScalingPolicyConfiguration")) for p in policies],
        [(a["ScheduledActionName"], a["Schedule"], a["ScalableTargetAction"]) for a in scheduled],
    )


AS_THE_TEAM_HAD_IT = (
    [(2, 6)],
    [("invocations", "TargetTrackingScaling", TARGET_TRACKING)],
    [("business-hours", "cron(0 8 ? * MON-FRI *)", {"MinCapacity": 3, "MaxCapacity": 6})],
)


def test_promotion_onto_another_instance_type_lifts_and_restores_the_serving_variants_autoscaling(account):
    """UpdateEndpoint refuses an instance-type change of an autoscaled variant: deregister, update, re-register."""
    _autoscale_serving_variant(account)
    # The baseline serves on ml.g4dn.12xlarge; the plan's candidate on another type.
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="autoscaled-type")

    assert execution.status == "SUCCEEDED", execution.cause
    assert _endpoint(account) == (PROMOTED_CONFIG, [SERVING_VARIANT])
    assert _scaling(account) == AS_THE_TEAM_HAD_IT
    lifted = [
        (c.operation, c.principal.split("/")[-2])
        for c in account.calls.checked
        if c.operation in {"DeregisterScalableTarget", "RegisterScalableTarget"}
    ]
    assert [op for op, _ in lifted] == ["DeregisterScalableTarget", "RegisterScalableTarget"]


def test_alarm_after_a_promotion_onto_another_instance_type_restores_config_and_autoscaling(account):
    """The rollback function's restore changes the instance type back: it lifts and restores the scaling too."""
    _autoscale_serving_variant(account)
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="promote-scaled")
    assert execution.status == "SUCCEEDED", execution.cause

    handled = _serving_alarm_after_promotion(account)
    assert handled["outcome"] == "rolled-back", handled
    # (The workflow account has no rollback topic: the notification problem is not this test's.)
    assert not [p for p in handled["problems"] if "Auto Scaling" in p or "alarm's action" in p], handled
    assert handled["action_notes"] == [
        f"autoscaling of {RESOURCE_ID} lifted for the restore",
        f"autoscaling of {RESOURCE_ID} restored",
    ]
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert _scaling(account) == AS_THE_TEAM_HAD_IT


def _lifted_record(account) -> dict:
    key = f"models/llama-8b/run-001/autoscaling/{BASELINE_ENDPOINT}-{SERVING_VARIANT}.json"
    body = account.s3.get_object(Bucket=account.synthesized.bucket, Key=key)["Body"].read()
    return json.loads(body)


def test_a_promotion_that_fails_after_the_scaling_was_lifted_rolls_back_and_puts_the_scaling_back(account):
    """The candidate never starts on its new instance type: rollback, then the target is registered again."""
    _autoscale_serving_variant(account)
    account.faults.failing_configs[PROMOTED_CONFIG] = "The candidate did not pass the ping health check."
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="promote-fails")

    assert execution.status == "FAILED"
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert _scaling(account) == AS_THE_TEAM_HAD_IT
    assert _lifted_record(account)["restored"] is True
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"
    assert _package_status(account) == "Rejected"


def test_scaling_an_earlier_execution_lifted_and_never_put_back_is_restored_by_the_rerun(account):
    """An execution stopped between the lift and the resume (nothing catches a stop): its record remains."""
    _autoscale_serving_variant(account)
    # What "Suspend autoscaling" left: the record in S3, the target deregistered.
    captured = _shared_autoscaling().capture(account.autoscaling, BASELINE_ENDPOINT, SERVING_VARIANT)
    key = f"models/llama-8b/run-001/autoscaling/{BASELINE_ENDPOINT}-{SERVING_VARIANT}.json"
    _shared_autoscaling().write_record(account.s3, account.synthesized.bucket, key, captured, restored=False)
    _shared_autoscaling().suspend(account.autoscaling, captured)
    assert _scaling(account) == ([], [], [])

    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="rerun")

    assert execution.status == "SUCCEEDED", execution.cause
    assert _endpoint(account) == (PROMOTED_CONFIG, [SERVING_VARIANT])
    assert _scaling(account) == AS_THE_TEAM_HAD_IT
    assert _lifted_record(account)["restored"] is True


def _shared_autoscaling():
    import importlib

    return importlib.import_module("endpoint_autoscaling")  # lambda/shared, on sys.path through the harness


def test_canary_whose_promotion_would_lose_a_step_scaling_alarm_is_refused_before_it_starts(account):
    """A re-created step-scaling policy gets a new ARN its alarm does not name: refuse, say what to do."""
    _autoscale_serving_variant(account, policy_type="StepScaling")
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="step-scaled")

    assert execution.status == "FAILED"
    assert execution.error == "CanaryRefused"
    assert "StepScaling" in execution.cause
    assert "serving_instance_type" in execution.cause
    assert _endpoint(account) == (BASELINE_CONFIG, [SERVING_VARIANT])
    assert account.calls.of("update_endpoint") == []
    assert _package_status(account) == "Rejected"


def test_a_report_over_the_payload_quota_does_not_stop_the_run(account):
    """report.json grows with the evaluation; the state machine reads only the bounded gate.json.

    Read whole, a 300 KiB report would fail "Read report" with States.DataLimitExceeded, which no
    States.ALL catcher handles (the harness fails any execution with an oversized payload).
    """
    account.faults.report_padding_bytes = 300 * 1024
    account.faults.gate_passed = False
    account.faults.gate_reasons = [f"FAIL: check {i} " + "y" * 400 for i in range(200)]
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="big-report")

    assert execution.status == "FAILED"
    assert execution.error == "GateFailed"
    reasons = json.loads(execution.cause)
    assert reasons[0].startswith("FAIL: check 0 ")
    assert reasons[-1] == "... 180 more in report.json"
    assert _package_status(account) == "Rejected"


def test_the_quality_sampler_publishes_the_candidates_metrics_during_the_canary_as_its_own_role(account):
    """EventBridge's schedule, mid-bake: the sampler (its synthesized role, every call checked) reads the
    tags and the run's review prompts, stores the baseline's reference, judges the candidate and publishes
    into LLMQ/Quality. The emulated runtime returns no prompt log-probabilities: the ratio is left out, the
    rest is published, and the run still promotes. The stage captures data, so the sampler also lists the
    run's capture prefixes (allowed by its role); nothing was captured in the emulator, which it reports."""
    account.faults.sample_quality_at_candidate_weight = 10
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="quality")

    assert execution.status == "SUCCEEDED", execution.cause
    (result,) = account.shims.quality_results
    sampled = result["endpoints"][BASELINE_ENDPOINT]
    assert sampled["outcome"] == "published", sampled
    assert sampled["variant"] == "candidate"
    assert set(sampled["metrics"]) == {"GreedyAgreementPercent", "EmptyOrRefusalPercent", "OutputLengthRatio"}
    assert any("log-probabilities" in note for note in sampled["notes"])
    assert sampled["captured_prompts"] == 0 and any("no captured prompts" in n for n in sampled["notes"])
    sampler_role = next(f.role for f in account.synthesized.functions.values() if f.folder.name == "quality_sampler")
    by_sampler = [c for c in account.calls.checked if c.principal == sampler_role.name]
    assert {(c.service, c.operation) for c in by_sampler} == {
        ("sagemaker", "DescribeEndpoint"),
        ("sagemaker", "ListTags"),
        ("s3", "GetObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "PutObject"),
        ("sagemaker-runtime", "InvokeEndpoint"),
        ("cloudwatch", "PutMetricData"),
    }
    (put,) = [c.params for c in by_sampler if c.operation == "PutMetricData"]
    assert put["Namespace"] == "LLMQ/Quality"
    assert {d["Dimensions"][1]["Value"] for d in put["MetricData"]} == {"candidate"}
