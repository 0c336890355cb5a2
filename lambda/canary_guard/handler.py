"""Canary guard: may a canary start, may it go on, has an endpoint update really landed, and the serving
variant's autoscaling around a promotion (guard_logic.py)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from guard_logic import (
    autoscaling_plan,
    canary_check,
    endpoint_state,
    pre_canary,
    resume_autoscaling,
    suspend_autoscaling,
)

logger = Logger()
tracer = Tracer()


@cache
def clients() -> dict[str, Any]:
    """boto3 clients by the parameter names the logic takes, built once per container (tests reset the cache)."""
    return {
        "sm": boto3.client("sagemaker"),
        "cw": boto3.client("cloudwatch"),
        "autoscaling": boto3.client("application-autoscaling"),
        "s3": boto3.client("s3"),
    }


def _endpoint_state(sm: Any, *, endpoint: str, expect_config: str = "", expect_weights: Any = None) -> Any:
    # [{"VariantName": ..., "Weight": ...}]: variant names come from the run plan.
    weights = {w["VariantName"]: float(w["Weight"]) for w in expect_weights or []}
    return endpoint_state(sm, endpoint=endpoint, expect_config=expect_config or None, expect_weights=weights or None)


# action -> the logic that answers it. Its positional parameters name the clients it needs, its
# keyword parameters are the event's fields (the state machine sends exactly those).
ACTIONS: dict[str, Callable[..., Any]] = {
    "pre_canary": pre_canary,
    "canary_check": canary_check,
    "endpoint_state": _endpoint_state,
    "autoscaling_plan": autoscaling_plan,
    "suspend_autoscaling": suspend_autoscaling,
    "resume_autoscaling": resume_autoscaling,
}


def dispatch(event: dict[str, Any], available: dict[str, Any]) -> dict[str, Any]:
    action = event.get("action")
    logic = ACTIONS.get(str(action))
    if logic is None:
        raise ValueError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    args, kwargs = [], {}
    for name, parameter in inspect.signature(logic).parameters.items():
        if parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name in available:
            args.append(available[name])
        elif name in event:
            kwargs[name] = event[name]
        elif parameter.default is parameter.empty:
            raise ValueError(f"action {action}: the event has no {name!r}")
    result = logic(*args, **kwargs)
    return result if isinstance(result, dict) else dict(result.as_dict())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    result = dispatch(event, clients())
    summary = {k: result[k] for k in ("ok", "state", "reason") if k in result}
    logger.info("canary guard", extra={"action": action, "guard": summary})
    return result
