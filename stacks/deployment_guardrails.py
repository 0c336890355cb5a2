"""SageMaker deployment guardrails: the DeploymentConfig of an UpdateEndpoint that replaces a
variant's model in place and rolls back on that variant's alarms (docs/monitoring.md)."""

from __future__ import annotations

from typing import Any, Literal

# SageMaker's limits on a DeploymentConfig (UpdateEndpoint API reference).
_MAX_WAIT_SECONDS = 3600
_MIN_EXECUTION_TIMEOUT, _MAX_EXECUTION_TIMEOUT = 600, 28800
_MAX_ROLLBACK_ALARMS = 10


def guardrail_deployment_config(
    alarm_names: list[str],
    *,
    mode: Literal["canary", "linear", "all-at-once"] = "canary",
    step_percent: int = 10,
    wait_seconds: int = 600,
    termination_wait_seconds: int = 600,
    max_execution_seconds: int | None = None,
) -> dict[str, Any]:
    """The ``DeploymentConfig`` of an UpdateEndpoint that replaces the model inside one variant.

    SageMaker then runs a blue/green deployment itself: ``canary`` moves
    ``step_percent`` of the capacity first, waits ``wait_seconds`` (the bake),
    then the rest; ``linear`` moves ``step_percent`` per step with a bake after
    each. If any of ``alarm_names`` goes to ALARM during a bake or the final
    ``termination_wait_seconds``, SageMaker rolls all traffic back to the old
    fleet (AutoRollbackConfiguration). The new endpoint config must keep the
    variant name (docs: deployment guardrails exclusions).
    """
    if not 1 <= len(alarm_names) <= _MAX_ROLLBACK_ALARMS:
        raise ValueError(f"AutoRollbackConfiguration takes 1 to {_MAX_ROLLBACK_ALARMS} alarms, got {len(alarm_names)}")
    if not 1 <= step_percent <= (50 if mode == "canary" else 100):
        raise ValueError(f"step_percent {step_percent} is out of range for {mode} (canary: 1-50, linear: 1-100)")
    for name, value in (("wait_seconds", wait_seconds), ("termination_wait_seconds", termination_wait_seconds)):
        if not 0 <= value <= _MAX_WAIT_SECONDS:
            raise ValueError(f"{name} must be between 0 and {_MAX_WAIT_SECONDS}, got {value}")
    routing: dict[str, Any]
    steps = 1
    if mode in ("canary", "linear"):
        # The two stepped modes differ in their type, the name of their step size and their number of steps.
        size_key = "CanarySize" if mode == "canary" else "LinearStepSize"
        routing = {
            "Type": mode.upper(),
            "WaitIntervalInSeconds": wait_seconds,
            size_key: {"Type": "CAPACITY_PERCENT", "Value": step_percent},
        }
        steps = 2 if mode == "canary" else -(-100 // step_percent)
    elif mode == "all-at-once":
        routing = {"Type": "ALL_AT_ONCE"}
    else:
        raise ValueError(f"unknown mode {mode!r}")
    # Room for every bake plus the final wait and the new fleet's start-up.
    timeout = max_execution_seconds or min(
        _MAX_EXECUTION_TIMEOUT, max(_MIN_EXECUTION_TIMEOUT, steps * wait_seconds + termination_wait_seconds + 1800)
    )
    if not _MIN_EXECUTION_TIMEOUT <= timeout <= _MAX_EXECUTION_TIMEOUT:
        raise ValueError(f"max_execution_seconds must be between {_MIN_EXECUTION_TIMEOUT} and {_MAX_EXECUTION_TIMEOUT}")
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": timeout,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names]},
    }
