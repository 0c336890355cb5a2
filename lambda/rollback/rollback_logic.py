"""Alarm-driven rollback of a canaried SageMaker endpoint; no running execution needed.

Everything the function needs to act is on the endpoint itself (its tags,
docs/contracts.md), so an alarm an hour after promotion is handled like one
during the canary. The serving production variant keeps its own name
(``Settings.baseline_variant``, from ``StageConfig.serving_variant``); a canary
adds a variant named ``candidate`` beside it.

Order of work (every step is safe to repeat on a retry):

1. claim the rollback record (S3 conditional put, below);
2. tag ``llmq:phase=rolling-back`` (and ``llmq:rollback-from-phase``) BEFORE any
   traffic moves, so a running execution sees it before its next step and stops;
3. wait (bounded) for ``EndpointStatus`` InService: SageMaker refuses to change
   an endpoint that is Updating or Creating;
4. describe again and act on what the endpoint runs now:
   - phase ``canary`` and both variants present: weights serving 100 /
     candidate 0 (UpdateEndpointWeightsAndCapacities);
   - phase ``canary`` but one variant only (a promotion's UpdateEndpoint raced
     the alarm), or phase ``promoted``: UpdateEndpoint to
     ``llmq:last-approved-config``, whatever its name;
   A restore that changes the serving variant's instance type while it is
   autoscaled would be refused, so its scaling setup is first written to the
   rollback record, then the target is deregistered (AWS's documented
   procedure); it is registered again with its policies once the rollback
   ends, whatever the outcome (lambda/shared/endpoint_autoscaling.py);
5. wait for InService again and check the outcome (the variants' CurrentWeight,
   or EndpointConfigName equal to the expected config);
6. tag ``rolled-back`` only when the check passed; otherwise tag
   ``rollback-failed``, report ``RollbackFailed`` and stay armed: a later
   invocation (another alarm, a retry) takes the record over and tries again.

A wait that runs out while the endpoint is still changing raises
``EndpointBusyError`` (the record is marked ``failed``), so Lambda's async retry
takes the claim over and continues; on the last attempt (``max_attempts``) it is
reported ``rollback-failed`` instead.

Exactly-once per (endpoint, run, phase) comes from the rollback record itself:
it is first written with ``If-None-Match: *`` (an S3 conditional put), so of two
invocations for the same incident (EventBridge delivers at least once; several
alarms of one endpoint fire together) only one creates it and acts. A DynamoDB
conditional write would do the same, but needs a table, its key, its IAM and
its backups only for this; the record has to be written next to the run's
artifacts anyway, S3 is strongly consistent for it, and the versioned bucket
keeps every state the record went through. A claim whose invocation failed
(status ``failed`` or ``rollback-failed``) or died (no outcome after
``lock_stale_seconds``) is taken over with ``If-Match`` on its ETag.

Missing endpoints, variants or configs are reported (log, SNS, record), never
raised: an exception would only make Lambda retry something that cannot work.
Transient AWS errors do raise, so Lambda's own retries apply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import endpoint_autoscaling
from botocore.exceptions import ClientError
from rollback_settings import Settings

from contracts import alarm_signals, artifact_layout
from contracts.alarm_signals import ROLE_BASELINE, ROLLBACK_SIGNALS
from contracts.endpoint_tags import (
    ACTIVE_PHASES,
    PHASE_CANARY,
    PHASE_PROMOTED,
    PHASE_ROLLBACK_FAILED,
    PHASE_ROLLED_BACK,
    PHASE_ROLLING_BACK,
    TAG_LAST_APPROVED,
    TAG_MODEL,
    TAG_PACKAGE,
    TAG_PHASE,
    TAG_PROMOTED_AT,
    TAG_ROLLBACK_FROM,
    TAG_RUN,
    UNFINISHED_PHASES,
)

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")

# The function's own metric when a rollback did not reach its expected state.
ROLLBACK_FAILED_METRIC = "RollbackFailed"

IN_SERVICE = "InService"
# DescribeEndpoint statuses that end on their own (SageMaker API reference, EndpointStatus).
TRANSITIONAL_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
_CONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

Outcome = Literal[
    "rolled-back",  # restore reached InService on the expected weights/config; record written, notified
    "rollback-failed",  # restore did not reach the expected state; RollbackFailed, notified, still armed
    "duplicate",  # another invocation owns this rollback
    "ignored",  # not an ALARM that rolls back, or the endpoint is in no phase to roll back
    "outside-window",  # reported: promoted longer ago than the rollback window
    "endpoint-missing",  # reported: nothing to roll back
    "untracked",  # reported: the endpoint lacks the run tags, so there is no run to roll back
    "not-possible",  # reported: variant or last approved config missing
]


class RollbackImpossibleError(Exception):
    """The endpoint's state rules out the rollback (missing variant or config); report, do not retry."""


class EndpointBusyError(Exception):
    """The endpoint is still changing after the bounded wait: raised so Lambda's retry continues it."""


class RollbackFailedError(Exception):
    """A definitive outcome other than the expected one (FailureReason, Failed, wrong weights)."""


class Clients(Protocol):
    @property
    def sagemaker(self) -> Any: ...
    @property
    def s3(self) -> Any: ...
    @property
    def sns(self) -> Any: ...
    @property
    def autoscaling(self) -> Any: ...


@dataclass(frozen=True)
class Alarm:
    """The parts of a CloudWatch alarm state-change event the rollback uses."""

    name: str
    state: str
    reason: str
    arn: str
    changed_at: str  # ISO-8601, from the event

    def changed_at_epoch(self) -> float | None:
        try:
            return datetime.fromisoformat(self.changed_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


@dataclass
class RollbackReport:
    outcome: Outcome
    alarm: str
    endpoint: str | None = None
    phase: str | None = None
    model_name: str | None = None
    run_id: str | None = None
    action: dict[str, Any] = field(default_factory=dict)
    record_uri: str | None = None
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    # Seconds from the start of handling to the traffic call returning.
    seconds_to_traffic_call: float | None = None
    # Seconds from the alarm's state change (event timestamp) to the traffic call returning.
    seconds_from_alarm: float | None = None
    # What happened around the traffic action (autoscaling lifted and restored).
    action_notes: list[str] = field(default_factory=list)
    notified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_alarm_action_event(event: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge alarm state-change event in the shape of a CloudWatch alarm-action event.

    Both carry the same alarm data (name, state, previous state, configuration);
    EventBridge puts it under ``detail`` and the alarm ARN in ``resources``. An
    event already in the alarm-action shape is returned unchanged.
    """
    if "alarmData" in event or "detail" not in event:
        return event
    resources = event.get("resources") or [""]
    return {
        "source": event.get("source", "aws.cloudwatch"),
        "alarmArn": resources[0],
        "accountId": event.get("account", ""),
        "time": event.get("time", ""),
        "region": event.get("region", ""),
        "alarmData": event["detail"],
    }


def endpoint_for_alarm(alarm_name: str, settings: Settings) -> tuple[str, str | None, str | None] | None:
    """(endpoint, role, signal) for a monitored endpoint's alarm; role and signal are None for the composite.

    The role is the word in the name (``baseline`` for the serving variant,
    ``candidate``), not the variant's name: the serving variant keeps its own.
    """
    return alarm_signals.parse_alarm_name(alarm_name, settings.monitored_endpoints)


def record_key(model_name: str, run_id: str, endpoint: str, phase: str) -> str:
    """Where the rollback record (and lock) of one run lives in the artifact bucket."""
    return artifact_layout.rollback_record_key(model_name, run_id, endpoint, phase)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_not_found(error: ClientError) -> bool:
    # SageMaker answers a missing endpoint/config with ValidationException "Could not find ...".
    message = str(error.response.get("Error", {}).get("Message", "")).lower()
    return _error_code(error) in {"ValidationException", "ResourceNotFound"} and (
        "could not find" in message or "does not exist" in message or "not found" in message
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RollbackLock:
    """The rollback record as a lock: conditional puts on one S3 key."""

    def __init__(self, s3: Any, bucket: str, key: str, stale_seconds: int) -> None:
        self.s3, self.bucket, self.key, self.stale_seconds = s3, bucket, key, stale_seconds
        self.uri = f"s3://{bucket}/{key}"

    def _put(self, record: dict[str, Any], **condition: str) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=json.dumps(record, indent=1, sort_keys=True).encode(),
            ContentType="application/json",
            **condition,
        )

    def claim(self, record: dict[str, Any]) -> bool:
        """True if this invocation now owns the rollback (``record`` gains ``takes_over`` on a takeover)."""
        try:
            self._put(record, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if _error_code(exc) not in _CONDITION_FAILED:
                raise
        existing = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        previous = json.loads(existing["Body"].read())
        age = time.time() - float(previous.get("claimed_at_epoch", 0))
        # A failed invocation, a rollback that did not reach its expected state (the
        # function stays armed) or a claim whose invocation died.
        abandoned = previous.get("status") in ("failed", PHASE_ROLLBACK_FAILED) or (
            previous.get("status") == "in-progress" and age > self.stale_seconds
        )
        if not abandoned:
            logger.info("rollback already claimed", extra={"record": self.uri, "status": previous.get("status")})
            return False
        # Kept in the final record too: it shows the rollback needed a second attempt.
        record["takes_over"] = previous.get("status")
        if previous.get("autoscaling"):
            # An earlier attempt lifted the variant's autoscaling: this one puts it back.
            record["autoscaling"] = previous["autoscaling"]
        record["attempt"] = int(previous.get("attempt", 1)) + 1
        try:
            self._put(record, IfMatch=existing["ETag"])
        except ClientError as exc:
            if _error_code(exc) in _CONDITION_FAILED:
                return False
            raise
        logger.warning("took over an abandoned rollback claim", extra={"record": self.uri, "previous": previous})
        return True

    def write(self, record: dict[str, Any]) -> None:
        """Overwrite with the outcome (versioning keeps the claim as the previous version)."""
        self._put(record)


@contextmanager
def _busy_is_retryable(name: str) -> Iterator[None]:
    """SageMaker refuses a change while the endpoint is Updating/Creating (ValidationException
    "Cannot update in-progress endpoint"): someone changed it after our wait; retry later."""
    try:
        yield
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", "")).lower()
        if _error_code(exc) == "ValidationException" and "in-progress" in message:
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


def _variants(endpoint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}


def _require_in_service(endpoint: dict[str, Any]) -> None:
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
    current = _variants(endpoint)
    if current.get(candidate, {}).get("CurrentWeight") == 0 and endpoint.get("EndpointStatus") == IN_SERVICE:
        # A retry after the weights call already went through.
        action["note"] = "candidate already at weight 0"
    else:
        with _busy_is_retryable(name):
            sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[{"VariantName": v, "DesiredWeight": w} for v, w in weights.items()],
            )
        action["traffic_call_returned_at"] = _now_iso()
    after = wait_for_terminal_status(sagemaker, name, settings, clock=clock, sleep=sleep)
    _require_in_service(after)
    observed = {v: s.get("CurrentWeight") for v, s in _variants(after).items()}
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
        if _is_not_found(exc):
            message = f"last approved endpoint config {target} of {name} no longer exists"
            raise RollbackImpossibleError(message) from None
        raise
    # A plain UpdateEndpoint: SageMaker's blue/green replacement keeps serving the
    # current fleet until the restored one is in service.
    with _busy_is_retryable(name):
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=target, RetainAllVariantProperties=False)
    action["traffic_call_returned_at"] = _now_iso()
    after = wait_for_terminal_status(sagemaker, name, settings, clock=clock, sleep=sleep)
    _require_in_service(after)
    if after.get("EndpointConfigName") != target:
        # A failed update returns the endpoint to InService on the old config with FailureReason.
        raise RollbackFailedError(
            f"endpoint {name} is InService on {after.get('EndpointConfigName')}, not {target}: "
            f"{after.get('FailureReason') or 'no FailureReason'}"
        )
    return action


def roll_back(
    alarm: Alarm,
    *,
    settings: Settings,
    clients: Clients,
    request_id: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> RollbackReport:
    """Handle one alarm state change; see the module docstring for what happens when."""
    started = clock()
    report = RollbackReport(outcome="ignored", alarm=alarm.name)
    target = _triage(alarm, settings, report)
    state = _read_endpoint(clients, settings, report) if target else None
    if target is None or state is None:
        return report
    endpoint, tags, from_phase = state
    if not _alarm_applies(target[1], from_phase, tags, settings, report, now(), clients):
        return report
    assert report.model_name and report.run_id and report.endpoint
    key = record_key(report.model_name, report.run_id, report.endpoint, from_phase)
    lock = RollbackLock(clients.s3, settings.artifact_bucket, key, settings.lock_stale_seconds)
    report.record_uri = lock.uri
    record: dict[str, Any] = {
        "schema": 2,
        "status": "in-progress",
        "attempt": 1,
        "endpoint": report.endpoint,
        "model_name": report.model_name,
        "run_id": report.run_id,
        "phase_before": from_phase,
        "endpoint_config_before": endpoint.get("EndpointConfigName"),
        "endpoint_status_before": endpoint.get("EndpointStatus"),
        "model_package_arn": tags.get(TAG_PACKAGE),
        "last_approved_config": tags.get(TAG_LAST_APPROVED),
        "alarm": {"name": alarm.name, "arn": alarm.arn, "reason": alarm.reason, "changed_at": alarm.changed_at},
        "who": {"actor": "alarm-driven rollback", "function": settings.function_name, "request_id": request_id},
        "claimed_at": _now_iso(),
        "claimed_at_epoch": time.time(),
    }
    if not lock.claim(record):
        report.outcome = "duplicate"
        report.detail = f"rollback already claimed in {lock.uri}"
        return report
    run = _Rollback(alarm, settings, clients, report, lock, record, endpoint, tags, from_phase, clock, sleep)
    run.execute()
    if report.outcome == "rolled-back":
        report.seconds_to_traffic_call = clock() - started
        alarm_epoch = alarm.changed_at_epoch()
        if alarm_epoch is not None:
            report.seconds_from_alarm = max(0.0, time.time() - alarm_epoch)
    return report


@dataclass
class _Rollback:
    """One claimed rollback: act, confirm, record the outcome."""

    alarm: Alarm
    settings: Settings
    clients: Clients
    report: RollbackReport
    lock: RollbackLock
    record: dict[str, Any]
    endpoint: dict[str, Any]
    tags: dict[str, str]
    from_phase: str
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    def execute(self) -> None:
        report, record = self.report, self.record
        try:
            report.action = self._act()
        except RollbackImpossibleError as exc:
            report.outcome, report.detail = "not-possible", str(exc)
            logger.error(report.detail, extra={"alarm": self.alarm.name, "endpoint": report.endpoint})
            self._restore_autoscaling()
            _tag_outcome(self.clients.sagemaker, self.endpoint["EndpointArn"], PHASE_ROLLBACK_FAILED, report)
            self.lock.write({**record, "status": "not-possible", "detail": report.detail, "completed_at": _now_iso()})
            _notify(self.clients.sns, self.settings, report)
            return
        except RollbackFailedError as exc:
            self._finish(PHASE_ROLLBACK_FAILED, str(exc))
            return
        except EndpointBusyError as exc:
            attempt = int(record.get("attempt", 1))
            if attempt >= self.settings.max_attempts:
                self._finish(
                    PHASE_ROLLBACK_FAILED, f"{exc}; gave up on attempt {attempt} of {self.settings.max_attempts}"
                )
                return
            logger.warning("endpoint still changing: freeing the claim for the retry", extra={"detail": str(exc)})
            self.lock.write({**record, "status": "failed", "detail": str(exc), "completed_at": _now_iso()})
            raise
        except Exception as exc:
            # Transient (throttling, a network error): free the claim for the retry. On the last
            # attempt no retry follows: a lifted scalable target goes back now.
            if int(record.get("attempt", 1)) >= self.settings.max_attempts:
                self._restore_autoscaling()
            self.lock.write({**record, "status": "failed", "detail": repr(exc), "completed_at": _now_iso()})
            raise
        detail = f"{report.action['type']} on {report.endpoint} after alarm {self.alarm.name}: confirmed InService"
        self._finish(PHASE_ROLLED_BACK, detail)

    def _act(self) -> dict[str, Any]:
        sagemaker, settings, name = self.clients.sagemaker, self.settings, self.endpoint["EndpointName"]
        # First, before any traffic moves: a running execution stops at its next step.
        _tag(
            sagemaker, self.endpoint["EndpointArn"], {TAG_PHASE: PHASE_ROLLING_BACK, TAG_ROLLBACK_FROM: self.from_phase}
        )
        current = wait_for_terminal_status(sagemaker, name, settings, clock=self.clock, sleep=self.sleep)
        _require_in_service(current)
        variants = _variants(current)
        if self.from_phase == PHASE_CANARY and {settings.baseline_variant, settings.candidate_variant} <= set(variants):
            return shift_traffic_to_baseline(sagemaker, current, settings, clock=self.clock, sleep=self.sleep)
        if self.from_phase == PHASE_CANARY and len(variants) != 1:
            raise RollbackImpossibleError(
                f"endpoint {name} has neither both variants {settings.baseline_variant} and "
                f"{settings.candidate_variant} nor one promoted variant (has: {', '.join(variants) or 'none'})"
            )
        # Promoted, or a promotion's UpdateEndpoint raced the alarm and the endpoint now
        # runs the single-variant promoted config: restore the approved one.
        self._lift_autoscaling(current)
        action = restore_last_approved_config(
            sagemaker, current, self.tags, settings, clock=self.clock, sleep=self.sleep
        )
        if self.from_phase == PHASE_CANARY:
            action["note"] = "the promotion raced the alarm: restored the last approved config"
        return action

    def _lift_autoscaling(self, current: dict[str, Any]) -> None:
        """Deregister the serving variant's scaling if the restore changes its instance type.

        The captured setup goes into the record first, so a retry (or a takeover) can still
        put it back after this invocation dies.
        """
        autoscaling, record = self.clients.autoscaling, self.record
        if not record.get("autoscaling"):
            # A promotion that lifted the scaling and never put it back (its execution was stopped):
            # restored with this rollback.
            left = endpoint_autoscaling.read_record(self.clients.s3, self.settings.artifact_bucket, self._lifted_key())
            if left and not endpoint_autoscaling.is_registered(autoscaling, left["resource_id"]):
                record["autoscaling"] = left
                self.lock.write(record)
        if record.get("autoscaling"):
            captured = record["autoscaling"]
        else:
            serving, target = self.settings.baseline_variant, self.tags.get(TAG_LAST_APPROVED)
            if not target or target == current.get("EndpointConfigName"):
                return
            before = _instance_type(self.clients.sagemaker, current.get("EndpointConfigName"), serving)
            after = _instance_type(self.clients.sagemaker, target, serving)
            if before is None or after is None or before == after:
                return  # a model-only change (allowed on an autoscaled variant), or restore reports the gap
            captured = endpoint_autoscaling.capture(autoscaling, current["EndpointName"], serving)
            if captured is None:
                return
            # Rolling back comes first: a step-scaling policy is put back, but its alarm's action
            # still names the old policy ARN, so people have to re-point it.
            self.report.problems += [f"{b}: re-point its alarm's action" for b in captured["blockers"]]
            record["autoscaling"] = captured
            self.lock.write(record)
        if endpoint_autoscaling.is_registered(autoscaling, captured["resource_id"]):
            endpoint_autoscaling.suspend(autoscaling, captured)
        self.report.action_notes.append(f"autoscaling of {captured['resource_id']} lifted for the restore")

    def _lifted_key(self) -> str:
        assert self.report.model_name and self.report.run_id and self.report.endpoint
        return artifact_layout.autoscaling_record_key(
            self.report.model_name, self.report.run_id, self.report.endpoint, self.settings.baseline_variant
        )

    def _restore_autoscaling(self) -> None:
        """Register the lifted target again with its policies; a failure is reported, never raised."""
        captured = self.record.get("autoscaling")
        if not captured or self.record.get("autoscaling_restored"):
            return
        try:
            restored = endpoint_autoscaling.restore(self.clients.autoscaling, captured)
            self.clients.s3.put_object(
                Bucket=self.settings.artifact_bucket,
                Key=self._lifted_key(),
                Body=endpoint_autoscaling.record(captured, restored=True),
                ContentType="application/json",
            )
        except Exception as exc:
            self.report.problems.append(
                f"could not register {captured['resource_id']} with Application Auto Scaling again "
                f"(min {captured['min_capacity']}, max {captured['max_capacity']}, policies "
                f"{[p['PolicyName'] for p in captured['policies']]}): {exc}"
            )
            logger.exception("restoring autoscaling failed")
            return
        self.record["autoscaling_restored"] = restored
        self.report.action_notes.append(f"autoscaling of {captured['resource_id']} restored")

    def _finish(self, phase: str, detail: str) -> None:
        """Tag the outcome, reject the package, write the record, notify.

        ``rolled-back`` only after the check passed; ``rollback-failed`` leaves the
        function armed (the record's status lets the next invocation take over).
        """
        report, record, sagemaker = self.report, self.record, self.clients.sagemaker
        report.outcome, report.detail = ("rolled-back" if phase == PHASE_ROLLED_BACK else "rollback-failed"), detail
        self._restore_autoscaling()
        if phase == PHASE_ROLLED_BACK:
            logger.warning(detail, extra={"action": report.action, "record": self.lock.uri})
        else:
            logger.error(detail, extra={"alarm": self.alarm.name, "endpoint": report.endpoint})
        _tag_outcome(sagemaker, self.endpoint["EndpointArn"], phase, report)
        status = "done" if phase == PHASE_ROLLED_BACK else PHASE_ROLLBACK_FAILED
        record.update(status=status, detail=detail, action=report.action)
        package = _reject_package(sagemaker, self.tags.get(TAG_PACKAGE), self.alarm, self.lock.uri, report)
        record.update(model_package=package, problems=report.problems, completed_at=_now_iso())
        self.lock.write(record)
        _notify(self.clients.sns, self.settings, report)


def _instance_type(sagemaker: Any, config: str | None, variant: str) -> str | None:
    if not config:
        return None
    try:
        variants = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    except ClientError as exc:
        if _is_not_found(exc):
            return None
        raise
    found: str | None = {v["VariantName"]: v.get("InstanceType") for v in variants}.get(variant)
    return found


def _triage(alarm: Alarm, settings: Settings, report: RollbackReport) -> tuple[str, str | None, str | None] | None:
    """(endpoint, role, signal) if the alarm is an ALARM of a rollback signal of a monitored endpoint."""
    target = endpoint_for_alarm(alarm.name, settings) if alarm.state == "ALARM" else None
    if alarm.state != "ALARM":
        report.detail = f"alarm state is {alarm.state}, not ALARM"
    elif target is None:
        report.detail = "alarm does not belong to a monitored endpoint (docs/contracts.md names)"
    elif target[2] is not None and target[2] not in ROLLBACK_SIGNALS:
        report.endpoint = target[0]
        report.detail = f"{target[2]} alarms only notify (ModelLatency grows with output length)"
    else:
        report.endpoint = target[0]
        return target
    logger.info(report.detail, extra={"alarm": alarm.name})
    return None


def _alarm_applies(  # noqa: PLR0917
    role: str | None,
    from_phase: str,
    tags: dict[str, str],
    settings: Settings,
    report: RollbackReport,
    now_epoch: float,
    clients: Clients,
) -> bool:
    """Which alarms roll back in which phase (docs/monitoring.md)."""
    if from_phase == PHASE_CANARY and role == ROLE_BASELINE:
        # Moving traffic onto the variant that is alarming would make things worse.
        report.detail = "during a canary the serving variant's alarms are for people; only candidate alarms roll back"
        logger.info(report.detail, extra={"alarm": report.alarm})
        return False
    if from_phase == PHASE_PROMOTED and settings.promoted_window_seconds and report.phase == PHASE_PROMOTED:
        promoted_at = _parse_iso(tags.get(TAG_PROMOTED_AT))
        if promoted_at is None:
            report.problems.append(f"no valid {TAG_PROMOTED_AT} tag: rolled back as if within the window")
        elif now_epoch - promoted_at > settings.promoted_window_seconds:
            report.outcome = "outside-window"
            report.detail = (
                f"promoted at {tags.get(TAG_PROMOTED_AT)}, more than {settings.promoted_window_seconds} s ago: "
                "the promoted config is the approved one now; not rolled back"
            )
            logger.warning(report.detail, extra={"alarm": report.alarm})
            _notify(clients.sns, settings, report)
            return False
    return True


def _parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _read_endpoint(
    clients: Clients, settings: Settings, report: RollbackReport
) -> tuple[dict[str, Any], dict[str, str], str] | None:
    """The endpoint, its tags and the phase to roll back from; otherwise report why not."""
    try:
        endpoint: dict[str, Any] = clients.sagemaker.describe_endpoint(EndpointName=report.endpoint)
    except ClientError as exc:
        if not _is_not_found(exc):
            raise
        report.outcome = "endpoint-missing"
        report.detail = f"endpoint {report.endpoint} does not exist; nothing to roll back"
        logger.error(report.detail, extra={"alarm": report.alarm, "endpoint": report.endpoint})
        _notify(clients.sns, settings, report)
        return None
    listed = clients.sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])
    tags = {t["Key"]: t["Value"] for t in listed.get("Tags", [])}
    report.phase, report.model_name, report.run_id = tags.get(TAG_PHASE), tags.get(TAG_MODEL), tags.get(TAG_RUN)
    if report.phase in ACTIVE_PHASES:
        from_phase = report.phase
    elif report.phase in UNFINISHED_PHASES and tags.get(TAG_ROLLBACK_FROM) in ACTIVE_PHASES:
        # A rollback that has not reached its expected state yet: still armed.
        from_phase = tags[TAG_ROLLBACK_FROM]
    else:
        report.detail = f"endpoint phase is {report.phase!r}: nothing to roll back"
        logger.info(report.detail, extra={"alarm": report.alarm, "endpoint": report.endpoint})
        return None
    if not report.model_name or not report.run_id:
        report.outcome = "untracked"
        report.detail = f"endpoint {report.endpoint} is {report.phase} but lacks {TAG_MODEL}/{TAG_RUN} tags"
        logger.error(report.detail, extra={"alarm": report.alarm, "tags": tags})
        _notify(clients.sns, settings, report)
        return None
    return endpoint, tags, from_phase


def _tag(sagemaker: Any, endpoint_arn: str, tags: dict[str, str]) -> None:
    sagemaker.add_tags(ResourceArn=endpoint_arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def _tag_outcome(sagemaker: Any, endpoint_arn: str, phase: str, report: RollbackReport) -> None:
    try:
        _tag(sagemaker, endpoint_arn, {TAG_PHASE: phase})
    except ClientError as exc:
        report.problems.append(f"could not tag the endpoint {phase}: {exc}")
        logger.exception("tagging the endpoint failed")


def _reject_package(
    sagemaker: Any, package_arn: str | None, alarm: Alarm, record_uri: str, report: RollbackReport
) -> dict[str, Any]:
    if not package_arn:
        report.problems.append(f"endpoint has no {TAG_PACKAGE} tag: no model package rejected")
        return {"status": "unknown"}
    try:
        sagemaker.update_model_package(
            ModelPackageArn=package_arn,
            ModelApprovalStatus="Rejected",
            ApprovalDescription=f"Rolled back on alarm {alarm.name}"[:1024],
            CustomerMetadataProperties={
                "llmq:rollback-alarm": alarm.name[:256],
                "llmq:rollback-at": _now_iso(),
                "llmq:rollback-record": record_uri[:256],
            },
        )
    except ClientError as exc:
        report.problems.append(f"could not reject model package {package_arn}: {exc}")
        logger.exception("rejecting the model package failed")
        return {"arn": package_arn, "status": "reject-failed"}
    return {"arn": package_arn, "status": "Rejected"}


def _notify(sns: Any, settings: Settings, report: RollbackReport) -> None:
    subject = f"[{settings.resource_prefix}] rollback {report.outcome}: {report.endpoint or report.alarm}"
    try:
        sns.publish(
            TopicArn=settings.topic_arn,
            Subject=subject[:100],
            Message=json.dumps(report.as_dict(), indent=1, default=str),
            MessageAttributes={
                "outcome": {"DataType": "String", "StringValue": report.outcome},
                "endpoint": {"DataType": "String", "StringValue": report.endpoint or "-"},
            },
        )
        report.notified = True
    except ClientError as exc:
        # The traffic decision is already made and recorded; a lost notification
        # must not make Lambda repeat it.
        report.problems.append(f"could not notify: {exc}")
        logger.exception("publishing the rollback notification failed")
