"""Decisions the state machine cannot make with JSONPath alone: may a canary start, may it go on.

Pure logic over SageMaker and CloudWatch reads (the clients are passed in), so
tests call it directly and the workflow tests run it against the emulator.

- ``pre_canary``: before the endpoint changes. The endpoint must serve exactly
  one variant, named as the stage's ``serving_variant`` (the alarms watch that
  name), and must not be in the middle of a rollback. Its current config is
  then the one to restore after a promotion ("last approved"): a config with
  one serving variant is either the platform team's own or one a run really
  promoted, never a failed canary's two-variant config. A rerun whose endpoint
  already runs this run's canary config (phase ``evaluating`` or ``canary``) resumes,
  keeping the recorded config; another run's candidate under evaluation (phase
  ``evaluating``, which the rollback function does not guard) refuses a new canary.
  Promotion puts the candidate's model into the serving variant; if that
  variant is autoscaled and the candidate serves on another instance type,
  promotion suspends and restores its scaling (below); only a setup that cannot
  be restored faithfully (a step-scaling policy) is refused before the canary.
- ``autoscaling_plan`` / ``suspend_autoscaling`` / ``resume_autoscaling``:
  around the promotion's UpdateEndpoint. SageMaker refuses an update that
  changes an autoscaled variant's instance type, so the state machine reads the
  scaling setup first (read-only, kept in its payload), then records it in the
  run's autoscaling record and deregisters the target, updates, and registers it
  again with its policies once the endpoint settled (lambda/shared/endpoint_autoscaling.py).
- ``endpoint_state``: one poll of a bounded wait. "InService" alone is not
  success: a failed UpdateEndpoint returns the endpoint to InService on the
  old config with FailureReason set, and a weights update that did not apply
  leaves the old weights. So done means InService *and* the expected config
  *and* the expected weights; InService with anything else is a failure whose
  reason is SageMaker's FailureReason.
- ``canary_check``: during the bake and around promotion. The endpoint must
  still carry this run's tags in phase ``canary`` (the rollback function sets
  ``rolling-back`` before it moves any traffic), and none of the candidate's
  alarms may have entered ALARM since ``since``: an alarm that fired and
  cleared within the bake (missing data is not breaching once traffic moved
  away) still stops the run. DescribeAlarmHistory keeps state updates, so a
  short ALARM is not missed the way one DescribeAlarms at the end would miss it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import endpoint_autoscaling

from contracts.endpoint_tags import (
    PHASE_CANARY,
    PHASE_EVALUATING,
    TAG_LAST_APPROVED,
    TAG_PHASE,
    TAG_RUN,
    UNFINISHED_PHASES,
)

# Phases in which a new canary must not start: a rollback is under way or did not finish.
BLOCKING_PHASES = frozenset(UNFINISHED_PHASES)


@dataclass
class PreCanary:
    ok: bool
    reason: str = ""
    resume: bool = False
    config: str = ""
    last_approved: str = ""
    serving: dict[str, Any] = field(default_factory=dict)
    # CreateEndpointConfig refuses KmsKeyId when any variant runs on local NVMe storage.
    kms_allowed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# DescribeEndpoint's EndpointStatus values; the transitional ones end by themselves.
TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"})


@dataclass
class EndpointState:
    state: str  # "done", "wait" or "failed"
    status: str = ""
    config: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CanaryCheck:
    ok: bool
    reason: str = ""
    phase: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tags(sm: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = sm.list_tags(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def _family(instance_type: str) -> str:
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 else ""


def _blocking_phase(endpoint: str, tags: dict[str, str]) -> str:
    """Why the endpoint's phase refuses a new canary ("" if it does not)."""
    phase = tags.get(TAG_PHASE, "")
    if phase in BLOCKING_PHASES:
        return (
            f"endpoint {endpoint} is tagged {TAG_PHASE}={phase}: a rollback is under way or did not "
            "finish; restore the endpoint and its tags before a new canary"
        )
    if phase == PHASE_EVALUATING:
        # Not guarded by the rollback function: only its own run may take it further.
        return (
            f"endpoint {endpoint} is tagged {TAG_PHASE}={phase} by run {tags.get(TAG_RUN, '<none>')}: another "
            "candidate is being evaluated there; let that run end (or remove its candidate variant and restore "
            "the tags) before a new canary"
        )
    return ""


def pre_canary(
    sm: Any,
    autoscaling: Any,
    *,
    endpoint: str,
    run_id: str,
    serving_variant: str,
    canary_config: str,
    local_storage_families: list[str],
    candidate_local_storage: bool,
    candidate_instance_type: str,
) -> PreCanary:
    described = sm.describe_endpoint(EndpointName=endpoint)
    config = described["EndpointConfigName"]
    tags = _tags(sm, described["EndpointArn"])
    if config == canary_config and tags.get(TAG_RUN) == run_id and tags.get(TAG_LAST_APPROVED):
        # A rerun of this run after its canary config was deployed (phase evaluating or canary):
        # go on from the wait for that config, then the evaluation (its job is found, not re-created).
        return PreCanary(ok=True, resume=True, config=config, last_approved=tags[TAG_LAST_APPROVED])
    blocked = _blocking_phase(endpoint, tags)
    if blocked:
        return PreCanary(ok=False, reason=blocked)
    variants = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    names = [v["VariantName"] for v in variants]
    if names != [serving_variant]:
        return PreCanary(
            ok=False,
            reason=f"endpoint {endpoint} runs config {config} with variants {names}; a canary needs exactly one "
            f"serving variant named {serving_variant!r} (the stage's serving_variant, which the alarms watch)",
        )
    (serving,) = variants
    if "InstanceType" not in serving:
        return PreCanary(
            ok=False,
            reason=f"variant {serving_variant} of {config} is serverless; canaries need instance-backed variants",
        )
    if serving["InstanceType"] != candidate_instance_type:
        # Promotion will suspend and restore the variant's scaling; refuse now, rather than after
        # the whole canary, a setup that would not come back as it was.
        captured = endpoint_autoscaling.capture(autoscaling, endpoint, serving_variant)
        if captured and captured["blockers"]:
            return PreCanary(
                ok=False,
                reason=f"variant {serving_variant} of {endpoint} is autoscaled on {serving['InstanceType']} and "
                f"promotion onto {candidate_instance_type} must deregister it first (SageMaker refuses an "
                f"instance-type change of an autoscaled variant), but {'; '.join(captured['blockers'])}. Serve the "
                f"candidate on {serving['InstanceType']} (serving_instance_type) or use target tracking",
            )
    families = set(local_storage_families)
    kms_allowed = not candidate_local_storage and _family(serving["InstanceType"]) not in families
    return PreCanary(
        ok=True,
        config=config,
        last_approved=config,
        serving=json.loads(json.dumps(serving, default=str)),
        kms_allowed=kms_allowed,
    )


def endpoint_state(
    sm: Any, *, endpoint: str, expect_config: str | None = None, expect_weights: dict[str, float] | None = None
) -> EndpointState:
    """One poll: done (InService as expected), wait (transitional) or failed (with SageMaker's reason)."""
    described = sm.describe_endpoint(EndpointName=endpoint)
    status = described["EndpointStatus"]
    config = described.get("EndpointConfigName", "")
    failure = described.get("FailureReason", "")
    if status in TRANSITIONAL and status != "UpdateRollbackFailed":
        return EndpointState(state="wait", status=status, config=config)
    if status != "InService":
        return EndpointState(
            state="failed", status=status, config=config, reason=failure or f"endpoint {endpoint} is {status}"
        )
    if expect_config and config != expect_config:
        reason = f"endpoint {endpoint} is InService on {config}, not {expect_config}"
        return EndpointState(state="failed", status=status, config=config, reason=f"{reason}: {failure or 'no reason'}")
    if expect_weights:
        current = {v["VariantName"]: float(v.get("CurrentWeight", -1)) for v in described["ProductionVariants"]}
        wrong = {name: current.get(name) for name, weight in expect_weights.items() if current.get(name) != weight}
        if wrong:
            reason = f"weights on {endpoint} are {current}, expected {expect_weights}: {failure or 'no reason'}"
            return EndpointState(state="failed", status=status, config=config, reason=reason)
    return EndpointState(state="done", status=status, config=config)


def _entered_alarm(item: dict[str, Any]) -> bool:
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except json.JSONDecodeError:
        data = {}
    state = data.get("newState", {}).get("stateValue")
    summary = str(item.get("HistorySummary", ""))
    return state == "ALARM" or summary.endswith(" to ALARM")


def canary_check(sm: Any, cw: Any, *, endpoint: str, run_id: str, since: str, alarm_names: list[str]) -> CanaryCheck:
    described = sm.describe_endpoint(EndpointName=endpoint)
    tags = _tags(sm, described["EndpointArn"])
    phase = tags.get(TAG_PHASE, "")
    if phase != PHASE_CANARY or tags.get(TAG_RUN) != run_id:
        return CanaryCheck(
            ok=False,
            phase=phase,
            reason=f"endpoint {endpoint} is tagged {TAG_PHASE}={phase or '<none>'}, run "
            f"{tags.get(TAG_RUN, '<none>')}: the rollback function (or another run) has taken over",
        )
    start = datetime.fromisoformat(since.replace("Z", "+00:00"))
    fired = []
    for name in alarm_names:
        kwargs: dict[str, Any] = {"AlarmName": name, "HistoryItemType": "StateUpdate", "StartDate": start}
        while True:
            page = cw.describe_alarm_history(**kwargs)
            if any(_entered_alarm(item) for item in page.get("AlarmHistoryItems", [])):
                fired.append(name)
                break
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    # Already in ALARM (for instance since before ``since``): by prefix, which is what the
    # function's IAM scope (alarm:<endpoint>-candidate-*) authorizes.
    # Character by character on purpose: alarm names are not paths.
    prefix = os.path.commonprefix(alarm_names)  # noqa: RUF071
    current = cw.describe_alarms(AlarmNamePrefix=prefix, StateValue="ALARM").get("MetricAlarms", [])
    fired += [a["AlarmName"] for a in current if a["AlarmName"] in alarm_names and a["AlarmName"] not in fired]
    if fired:
        return CanaryCheck(ok=False, phase=phase, reason=f"in ALARM since {since}: {', '.join(sorted(fired))}")
    return CanaryCheck(ok=True, phase=phase)


@dataclass
class AutoscalingPlan:
    """Whether promotion must lift the serving variant's scaling, and what to put back afterwards."""

    ok: bool
    suspend: bool = False
    reason: str = ""
    captured: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def autoscaling_plan(
    sm: Any,
    autoscaling: Any,
    s3: Any,
    *,
    endpoint: str,
    serving_variant: str,
    instance_type: str,
    bucket: str,
    record_key: str,
) -> AutoscalingPlan:
    """Read-only: the scaling setup to lift if the update changes the serving variant's instance type.

    A setup an earlier execution of this run lifted and never put back (it was stopped or timed
    out in between) is taken from its record, so this promotion restores it.
    """
    resource = endpoint_autoscaling.resource_id(endpoint, serving_variant)
    lifted = endpoint_autoscaling.read_record(s3, bucket, record_key)
    if lifted and not endpoint_autoscaling.is_registered(autoscaling, resource):
        return AutoscalingPlan(ok=True, suspend=True, captured=lifted)
    described = sm.describe_endpoint(EndpointName=endpoint)
    variants = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])["ProductionVariants"]
    current = {v["VariantName"]: v.get("InstanceType") for v in variants}.get(serving_variant)
    if current == instance_type:
        return AutoscalingPlan(ok=True)  # a model-only change: SageMaker allows it on an autoscaled variant
    captured = endpoint_autoscaling.capture(autoscaling, endpoint, serving_variant)
    if captured is None:
        return AutoscalingPlan(ok=True)
    if captured["blockers"]:
        return AutoscalingPlan(ok=False, reason="; ".join(captured["blockers"]))
    return AutoscalingPlan(ok=True, suspend=True, captured=captured)


def suspend_autoscaling(
    autoscaling: Any, s3: Any, captured: dict[str, Any], *, bucket: str, record_key: str
) -> dict[str, Any]:
    """Record the setup durably, then deregister the target (a repeat finds nothing to deregister)."""
    endpoint_autoscaling.write_record(s3, bucket, record_key, captured, restored=False)
    if not endpoint_autoscaling.is_registered(autoscaling, captured["resource_id"]):
        return {"suspended": True, "record": f"s3://{bucket}/{record_key}", "note": "already deregistered"}
    endpoint_autoscaling.suspend(autoscaling, captured)
    return {"suspended": True, "record": f"s3://{bucket}/{record_key}"}


def resume_autoscaling(
    autoscaling: Any, s3: Any, captured: dict[str, Any], *, bucket: str, record_key: str
) -> dict[str, Any]:
    """Register the target again with its policies; the record then says it is back.

    A partial restore raises (RestoreIncompleteError), so the state machine's catch reports it
    and the record still says what to put back.
    """
    restored = endpoint_autoscaling.restore(autoscaling, captured)
    endpoint_autoscaling.write_record(s3, bucket, record_key, captured, restored=True)
    return {"restored": restored}
