"""The rollback's two actions on an endpoint, each confirmed: weights back to the serving variant, or the
last approved config restored; and the bounded wait for InService around them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError
from rollback_model import (
    EndpointBusyError,
    RollbackFailedError,
    RollbackImpossibleError,
    error_code,
    is_not_found,
    now_iso,
)
from rollback_settings import Settings

from contracts.endpoint_tags import (
    TAG_LAST_APPROVED,
)

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")


IN_SERVICE = "InService"


# DescribeEndpoint statuses that end on their own (SageMaker API reference, EndpointStatus).
TRANSITIONAL_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


@contextmanager
def busy_is_retryable(name: str) -> Iterator[None]:
    """SageMaker refuses a change while the endpoint is Updating/Creating (ValidationException
    "Cannot update in-progress endpoint"): someone changed it after our wait; retry later."""
    try:
        yield
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", "")).lower()
        if error_code(exc) == "ValidationException" and "in-progress" in message:
            raise EndpointBusyError(f"endpoint {name} changed again before the rollback call: {message}") from exc
        raise


def wait_for_terminal_status(
    sagemaker: Any,
    name: str,
    settings: Settings,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """DescribeEndpoint until the status is no longer transitional, at most ``wait_in_service_seconds``.

    Raises ``EndpointBusyError`` if the endpoint is still changing at the deadline.
    """
    deadline = clock() + settings.wait_in_service_seconds
    while True:
        described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        status = described.get("EndpointStatus")
        if status not in TRANSITIONAL_STATUSES:
            return described
        if clock() >= deadline:
            raise EndpointBusyError(
                f"endpoint {name} still {status} after {settings.wait_in_service_seconds} s "
                f"(config {described.get('EndpointConfigName')})"
            )
        sleep(settings.poll_seconds)


def variants_of(endpoint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}


def require_in_service(endpoint: dict[str, Any]) -> None:
    status = endpoint.get("EndpointStatus")
    if status != IN_SERVICE:
        reason = endpoint.get("FailureReason") or "no FailureReason"
        raise RollbackFailedError(f"endpoint {endpoint['EndpointName']} is {status}: {reason}")


def shift_traffic_to_baseline(
    sagemaker: Any,
    endpoint: dict[str, Any],
    settings: Settings,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """Serving variant 100, candidate 0; returns the action once SageMaker reports those weights."""
    name = endpoint["EndpointName"]
    serving, candidate = settings.baseline_variant, settings.candidate_variant
    weights = {candidate: 0.0, serving: 100.0}
    action: dict[str, Any] = {"type": "shift-traffic", "weights": weights}
    current = variants_of(endpoint)
    if current.get(candidate, {}).get("CurrentWeight") == 0 and endpoint.get("EndpointStatus") == IN_SERVICE:
        # A retry after the weights call already went through.
        action["note"] = "candidate already at weight 0"
    else:
        with busy_is_retryable(name):
            sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[{"VariantName": v, "DesiredWeight": w} for v, w in weights.items()],
            )
        action["traffic_call_returned_at"] = now_iso()
    after = wait_for_terminal_status(sagemaker, name, settings, clock=clock, sleep=sleep)
    require_in_service(after)
    observed = {v: s.get("CurrentWeight") for v, s in variants_of(after).items()}
    action["observed_weights"] = observed
    if observed.get(candidate) != 0 or not observed.get(serving):
        raise RollbackFailedError(f"endpoint {name} is InService with weights {observed}, expected {weights}")
    return action


def restore_last_approved_config(
    sagemaker: Any,
    endpoint: dict[str, Any],
    tags: dict[str, str],
    settings: Settings,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """UpdateEndpoint to ``llmq:last-approved-config``; returns the action once the endpoint serves it."""
    name, current = endpoint["EndpointName"], endpoint.get("EndpointConfigName")
    target = tags.get(TAG_LAST_APPROVED)
    if not target:
        raise RollbackImpossibleError(f"endpoint {name} has no {TAG_LAST_APPROVED} tag: no config to restore")
    action: dict[str, Any] = {"type": "restore-config", "from": current, "to": target}
    if target == current and endpoint.get("EndpointStatus") == IN_SERVICE:
        action["note"] = "already serving it"
        return action
    try:
        sagemaker.describe_endpoint_config(EndpointConfigName=target)
    except ClientError as exc:
        if is_not_found(exc):
            message = f"last approved endpoint config {target} of {name} no longer exists"
            raise RollbackImpossibleError(message) from None
        raise
    # A plain UpdateEndpoint: SageMaker's blue/green replacement keeps serving the
    # current fleet until the restored one is in service.
    with busy_is_retryable(name):
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=target, RetainAllVariantProperties=False)
    action["traffic_call_returned_at"] = now_iso()
    after = wait_for_terminal_status(sagemaker, name, settings, clock=clock, sleep=sleep)
    require_in_service(after)
    if after.get("EndpointConfigName") != target:
        # A failed update returns the endpoint to InService on the old config with FailureReason.
        raise RollbackFailedError(
            f"endpoint {name} is InService on {after.get('EndpointConfigName')}, not {target}: "
            f"{after.get('FailureReason') or 'no FailureReason'}"
        )
    return action


def instance_type_of(sagemaker: Any, config: str | None, variant: str) -> str | None:
    if not config:
        return None
    try:
        variants = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    found: str | None = {v["VariantName"]: v.get("InstanceType") for v in variants}.get(variant)
    return found
