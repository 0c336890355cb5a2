"""Alarm-driven rollback of a canaried SageMaker endpoint; no running execution needed.

Everything the function needs to act is on the endpoint itself (its tags,
docs/contracts.md), so an alarm an hour after promotion is handled like one
during the canary. The serving production variant keeps its own name
(``Settings.baseline_variant``, from ``StageConfig.serving_variant``); a canary
adds a variant named ``candidate`` beside it.

Phases acted from: ``canary`` and ``promoted`` (``ACTIVE_PHASES``, and a rollback of
one that has not finished). Not ``evaluating``: the candidate is on the endpoint at
weight 0 while the state machine evaluates it; no user sees it, the evaluation's load
test may trip its alarms on purpose, and the state machine removes it if the gate fails.

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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import endpoint_autoscaling
from botocore.exceptions import ClientError
from endpoint_actions import (
    instance_type_of,
    require_in_service,
    restore_last_approved_config,
    shift_traffic_to_baseline,
    variants_of,
    wait_for_terminal_status,
)
from rollback_lock import RollbackLock, record_key
from rollback_model import (
    Alarm,
    Clients,
    EndpointBusyError,
    RollbackFailedError,
    RollbackImpossibleError,
    RollbackReport,
    notify,
    now_iso,
)
from rollback_settings import Settings
from rollback_triage import alarm_applies, read_endpoint, triage

from contracts import artifact_layout
from contracts.endpoint_tags import (
    PHASE_CANARY,
    PHASE_ROLLBACK_FAILED,
    PHASE_ROLLED_BACK,
    PHASE_ROLLING_BACK,
    TAG_LAST_APPROVED,
    TAG_PACKAGE,
    TAG_PHASE,
    TAG_ROLLBACK_FROM,
)

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")


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
    target = triage(alarm, settings, report)
    state = read_endpoint(clients, settings, report) if target else None
    if target is None or state is None:
        return report
    endpoint, tags, from_phase = state
    if not alarm_applies(target[1], from_phase, tags, settings, report, now(), clients):
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
        "claimed_at": now_iso(),
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
            self.lock.write({**record, "status": "not-possible", "detail": report.detail, "completed_at": now_iso()})
            notify(self.clients.sns, self.settings, report)
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
            self.lock.write({**record, "status": "failed", "detail": str(exc), "completed_at": now_iso()})
            raise
        except Exception as exc:
            # Transient (throttling, a network error): free the claim for the retry. On the last
            # attempt no retry follows: a lifted scalable target goes back now.
            if int(record.get("attempt", 1)) >= self.settings.max_attempts:
                self._restore_autoscaling()
            self.lock.write({**record, "status": "failed", "detail": repr(exc), "completed_at": now_iso()})
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
        require_in_service(current)
        variants = variants_of(current)
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
            before = instance_type_of(self.clients.sagemaker, current.get("EndpointConfigName"), serving)
            after = instance_type_of(self.clients.sagemaker, target, serving)
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
            endpoint_autoscaling.write_record(
                self.clients.s3, self.settings.artifact_bucket, self._lifted_key(), captured, restored=True
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
        record.update(model_package=package, problems=report.problems, completed_at=now_iso())
        self.lock.write(record)
        notify(self.clients.sns, self.settings, report)


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
                "llmq:rollback-at": now_iso(),
                "llmq:rollback-record": record_uri[:256],
            },
        )
    except ClientError as exc:
        report.problems.append(f"could not reject model package {package_arn}: {exc}")
        logger.exception("rejecting the model package failed")
        return {"arn": package_arn, "status": "reject-failed"}
    return {"arn": package_arn, "status": "Rejected"}
