"""Whether an alarm rolls back anything: its endpoint, role and signal, the endpoint's phase, the window."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError
from rollback_model import Alarm, Clients, RollbackReport, is_not_found, notify
from rollback_settings import Settings

from contracts import alarm_signals
from contracts.alarm_signals import ROLE_BASELINE, ROLLBACK_SIGNALS
from contracts.endpoint_tags import (
    ACTIVE_PHASES,
    PHASE_CANARY,
    PHASE_EVALUATING,
    PHASE_PROMOTED,
    TAG_MODEL,
    TAG_PHASE,
    TAG_PROMOTED_AT,
    TAG_ROLLBACK_FROM,
    TAG_RUN,
    UNFINISHED_PHASES,
    tag_time,
)

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")


def endpoint_for_alarm(alarm_name: str, settings: Settings) -> tuple[str, str | None, str | None] | None:
    """(endpoint, role, signal) for a monitored endpoint's alarm; role and signal are None for the composite.

    The role is the word in the name (``baseline`` for the serving variant,
    ``candidate``), not the variant's name: the serving variant keeps its own.
    """
    return alarm_signals.parse_alarm_name(alarm_name, settings.monitored_endpoints)


def triage(alarm: Alarm, settings: Settings, report: RollbackReport) -> tuple[str, str | None, str | None] | None:
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


def alarm_applies(  # noqa: PLR0917
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
            notify(clients.sns, settings, report)
            return False
    return True


def _parse_iso(value: str | None) -> float | None:
    parsed = tag_time(value)
    return None if parsed is None else parsed.timestamp()


def read_endpoint(
    clients: Clients, settings: Settings, report: RollbackReport
) -> tuple[dict[str, Any], dict[str, str], str] | None:
    """The endpoint, its tags and the phase to roll back from; otherwise report why not."""
    try:
        endpoint: dict[str, Any] = clients.sagemaker.describe_endpoint(EndpointName=report.endpoint)
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        report.outcome = "endpoint-missing"
        report.detail = f"endpoint {report.endpoint} does not exist; nothing to roll back"
        logger.error(report.detail, extra={"alarm": report.alarm, "endpoint": report.endpoint})
        notify(clients.sns, settings, report)
        return None
    listed = clients.sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])
    tags = {t["Key"]: t["Value"] for t in listed.get("Tags", [])}
    report.phase, report.model_name, report.run_id = tags.get(TAG_PHASE), tags.get(TAG_MODEL), tags.get(TAG_RUN)
    if report.phase in ACTIVE_PHASES:
        from_phase = report.phase
    elif report.phase in UNFINISHED_PHASES and tags.get(TAG_ROLLBACK_FROM) in ACTIVE_PHASES:
        # A rollback that has not reached its expected state yet: still armed.
        from_phase = tags[TAG_ROLLBACK_FROM]
    elif report.phase == PHASE_EVALUATING:
        report.detail = (
            f"endpoint phase is {report.phase!r}: the candidate serves no user (weight 0) while the state "
            "machine evaluates it, and the state machine removes it if the gate fails; not acted upon"
        )
        logger.info(report.detail, extra={"alarm": report.alarm, "endpoint": report.endpoint})
        return None
    else:
        report.detail = f"endpoint phase is {report.phase!r}: nothing to roll back"
        logger.info(report.detail, extra={"alarm": report.alarm, "endpoint": report.endpoint})
        return None
    if not report.model_name or not report.run_id:
        report.outcome = "untracked"
        report.detail = f"endpoint {report.endpoint} is {report.phase} but lacks {TAG_MODEL}/{TAG_RUN} tags"
        logger.error(report.detail, extra={"alarm": report.alarm, "tags": tags})
        notify(clients.sns, settings, report)
        return None
    return endpoint, tags, from_phase
