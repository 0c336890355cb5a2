"""What one rollback handles and reports: the alarm, the outcome, the errors that decide retries, notification."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError
from rollback_settings import Settings

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")


# The function's own metric when a rollback did not reach its expected state.
ROLLBACK_FAILED_METRIC = "RollbackFailed"


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


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_not_found(error: ClientError) -> bool:
    # SageMaker answers a missing endpoint/config with ValidationException "Could not find ...".
    message = str(error.response.get("Error", {}).get("Message", "")).lower()
    return error_code(error) in {"ValidationException", "ResourceNotFound"} and (
        "could not find" in message or "does not exist" in message or "not found" in message
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def notify(sns: Any, settings: Settings, report: RollbackReport) -> None:
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
