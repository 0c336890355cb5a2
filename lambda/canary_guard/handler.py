"""Canary guard: may a canary start, may it go on, has an endpoint update really landed, and the serving
variant's autoscaling around a promotion (guard_logic.py)."""

from __future__ import annotations

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
def clients() -> tuple[Any, Any, Any, Any]:
    """boto3 clients, built once per container (tests reset the cache to point them at the emulator)."""
    return (
        boto3.client("sagemaker"),
        boto3.client("cloudwatch"),
        boto3.client("application-autoscaling"),
        boto3.client("s3"),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    sm, cw, autoscaling, s3 = clients()
    action = event.get("action")
    if action == "pre_canary":
        result = pre_canary(
            sm,
            autoscaling,
            endpoint=event["endpoint"],
            run_id=event["run_id"],
            serving_variant=event["serving_variant"],
            canary_config=event["canary_config"],
            local_storage_families=list(event["local_storage_families"]),
            candidate_local_storage=bool(event["candidate_local_storage"]),
            candidate_instance_type=event["candidate_instance_type"],
        ).as_dict()
    elif action == "canary_check":
        result = canary_check(
            sm,
            cw,
            endpoint=event["endpoint"],
            run_id=event["run_id"],
            since=event["since"],
            alarm_names=list(event["alarm_names"]),
        ).as_dict()
    elif action == "endpoint_state":
        # [{"VariantName": ..., "Weight": ...}]: variant names come from the run plan.
        weights = {w["VariantName"]: float(w["Weight"]) for w in event.get("expect_weights") or []}
        result = endpoint_state(
            sm,
            endpoint=event["endpoint"],
            expect_config=event.get("expect_config") or None,
            expect_weights=weights or None,
        ).as_dict()
    elif action == "autoscaling_plan":
        result = autoscaling_plan(
            sm,
            autoscaling,
            s3,
            endpoint=event["endpoint"],
            serving_variant=event["serving_variant"],
            instance_type=event["instance_type"],
            bucket=event["bucket"],
            record_key=event["record_key"],
        ).as_dict()
    elif action == "suspend_autoscaling":
        result = suspend_autoscaling(
            autoscaling, s3, event["captured"], bucket=event["bucket"], record_key=event["record_key"]
        )
    elif action == "resume_autoscaling":
        result = resume_autoscaling(
            autoscaling, s3, event["captured"], bucket=event["bucket"], record_key=event["record_key"]
        )
    else:
        raise ValueError(
            f"unknown action {action!r}: expected pre_canary, canary_check, endpoint_state, autoscaling_plan, "
            "suspend_autoscaling or resume_autoscaling"
        )
    summary = {k: result[k] for k in ("ok", "state", "reason") if k in result}
    logger.info("canary guard", extra={"action": action, "guard": summary})
    return result
