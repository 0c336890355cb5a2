"""Application Auto Scaling around an endpoint update that changes an autoscaled variant's instance type.

SageMaker refuses an UpdateEndpoint that changes the instance type of (or removes) a
production variant registered as a scalable target; a model-only change is allowed
(https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html). AWS's
procedure: deregister the target (which deletes its scaling policies and scheduled
actions), update, wait for InService, register the target again and put its policies
back. This module holds the three steps; the canary guard (promotion) and the rollback
function (restore after a promotion) both use it.

- ``capture``: the target's capacity bounds, suspended state, scaling policies and
  scheduled actions, in the shape their Put calls take (output-only fields dropped:
  ScalableTargetARN, CreationTime, PolicyARN, Alarms, ScheduledActionARN), JSON-safe so
  it can travel in a state machine's payload or a rollback record.
- ``suspend``: capture, then DeregisterScalableTarget.
- ``restore``: RegisterScalableTarget, then every policy and scheduled action.
- ``record`` / ``read_record``: the setup is also written to the artifact bucket
  before the target is deregistered, so an execution that is stopped or times out
  in between (nothing catches those) or a rollback invocation that dies leaves it
  where the next run, the rollback function or a person finds it.

A step-scaling policy is driven by a CloudWatch alarm the team owns, whose action names
the policy's ARN; a re-created policy gets a new ARN and the alarm would no longer act
(https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeleteScalingPolicy.html).
``capture`` reports such policies in ``blockers`` and callers refuse the change instead.
The target's own tags (ListTagsForResource) are not carried over.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_POLICY_FIELDS = (
    "PolicyName",
    "PolicyType",
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
)
_SCHEDULED_FIELDS = ("ScheduledActionName", "Schedule", "Timezone", "StartTime", "EndTime", "ScalableTargetAction")


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _pages(call: Any, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = call(**kwargs)
        items += page.get(key, [])
        if not page.get("NextToken"):
            return items
        kwargs["NextToken"] = page["NextToken"]


def capture(autoscaling: Any, endpoint: str, variant: str) -> dict[str, Any] | None:
    """The variant's scaling setup, or None when it is not a scalable target."""
    rid = resource_id(endpoint, variant)
    where = {"ServiceNamespace": NAMESPACE, "ResourceIds": [rid], "ScalableDimension": DIMENSION}
    targets = _pages(autoscaling.describe_scalable_targets, "ScalableTargets", **where)
    if not targets:
        return None
    (target,) = targets
    one = {"ServiceNamespace": NAMESPACE, "ResourceId": rid, "ScalableDimension": DIMENSION}
    policies = [
        {k: p[k] for k in _POLICY_FIELDS if p.get(k) is not None}
        for p in _pages(autoscaling.describe_scaling_policies, "ScalingPolicies", **one)
    ]
    scheduled = [
        {k: a[k] for k in _SCHEDULED_FIELDS if a.get(k) is not None}
        for a in _pages(autoscaling.describe_scheduled_actions, "ScheduledActions", **one)
    ]
    blockers = [
        f"scaling policy {p['PolicyName']} is StepScaling: its CloudWatch alarm names the policy's ARN, which a "
        "re-created policy does not keep"
        for p in policies
        if p.get("PolicyType") == "StepScaling"
    ]
    captured: dict[str, Any] = _json_safe(
        {
            "resource_id": rid,
            "min_capacity": target["MinCapacity"],
            "max_capacity": target["MaxCapacity"],
            "suspended_state": target.get("SuspendedState") or {},
            "policies": policies,
            "scheduled_actions": scheduled,
            "blockers": blockers,
        }
    )
    return captured


def suspend(autoscaling: Any, captured: dict[str, Any]) -> None:
    """DeregisterScalableTarget (AWS deletes the policies and scheduled actions with it)."""
    autoscaling.deregister_scalable_target(
        ServiceNamespace=NAMESPACE, ResourceId=captured["resource_id"], ScalableDimension=DIMENSION
    )


def is_registered(autoscaling: Any, resource: str) -> bool:
    where = {"ServiceNamespace": NAMESPACE, "ResourceIds": [resource], "ScalableDimension": DIMENSION}
    return bool(autoscaling.describe_scalable_targets(**where).get("ScalableTargets"))


class RestoreIncompleteError(Exception):
    """The target is registered again, but some of its policies or scheduled actions are not."""


def restore(autoscaling: Any, captured: dict[str, Any]) -> dict[str, Any]:
    """Register the target with its captured bounds, then put its policies and scheduled actions back.

    Safe to repeat: RegisterScalableTarget and both Put calls create or update by name. Each
    policy and action is tried on its own, so one refused item (a one-time action whose time has
    passed, say) does not keep the others off; what failed raises RestoreIncompleteError at the
    end, naming it.
    """
    one = {"ServiceNamespace": NAMESPACE, "ResourceId": captured["resource_id"], "ScalableDimension": DIMENSION}
    autoscaling.register_scalable_target(
        **one,
        MinCapacity=int(captured["min_capacity"]),
        MaxCapacity=int(captured["max_capacity"]),
        SuspendedState=captured.get("suspended_state") or {},
    )
    failed: list[str] = []
    for policy in captured["policies"]:
        try:
            autoscaling.put_scaling_policy(**one, **policy)
        except Exception as exc:
            failed.append(f"scaling policy {policy['PolicyName']}: {exc}")
    for action in captured["scheduled_actions"]:
        # StartTime/EndTime go back as given: omitted ones would be deleted (PutScheduledAction).
        times = {k: datetime.fromisoformat(action[k]) for k in ("StartTime", "EndTime") if k in action}
        try:
            autoscaling.put_scheduled_action(**one, **{**action, **times})
        except Exception as exc:
            failed.append(f"scheduled action {action['ScheduledActionName']}: {exc}")
    if failed:
        raise RestoreIncompleteError(
            f"{captured['resource_id']} is registered again (min {captured['min_capacity']}, max "
            f"{captured['max_capacity']}) but not: {'; '.join(failed)}"
        )
    return {
        "resource_id": captured["resource_id"],
        "policies": [p["PolicyName"] for p in captured["policies"]],
        "scheduled_actions": [a["ScheduledActionName"] for a in captured["scheduled_actions"]],
    }


def record(captured: dict[str, Any], *, restored: bool) -> bytes:
    """The durable copy of a lifted setup (artifact_layout.autoscaling_record_key), as written to S3."""
    return json.dumps({"captured": captured, "restored": restored}, indent=1, sort_keys=True).encode()


def write_record(s3: Any, bucket: str, key: str, captured: dict[str, Any], *, restored: bool) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=record(captured, restored=restored), ContentType="application/json")


def read_record(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The lifted setup recorded at ``key`` and not restored yet, or None."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        # Without s3:ListBucket a missing key answers AccessDenied, not NoSuchKey.
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in {"NoSuchKey", "AccessDenied", "404"}:
            return None
        raise
    data = json.loads(body)
    return None if data.get("restored") else dict(data["captured"])
