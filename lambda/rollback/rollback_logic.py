"""Alarm-driven rollback of a canaried SageMaker endpoint; no running execution needed.

Everything the function needs to act is on the endpoint itself (its tags,
docs/contracts.md), so an alarm an hour after promotion is handled exactly like
one during the canary:

- ``llmq:phase=canary``: the candidate variant goes to weight 0 and the
  baseline to 100 (UpdateEndpointWeightsAndCapacities: seconds, no new instances);
- ``llmq:phase=promoted``: the endpoint goes back to the config named by
  ``llmq:last-approved-config`` (UpdateEndpoint: a blue/green replacement);
- anything else (``rolled-back``, untagged): nothing to do.

Exactly-once per (endpoint, run, phase) comes from the rollback record itself:
it is first written with ``If-None-Match: *`` (an S3 conditional put), so of two
invocations for the same incident (EventBridge delivers at least once; several
alarms of one endpoint fire together) only one creates it and acts. A DynamoDB
conditional write would do the same, but needs a table, its key, its IAM and
its backups only for this; the record has to be written next to the run's
artifacts anyway, S3 is strongly consistent for it, and the versioned bucket
keeps every state the record went through. A claim whose invocation failed
(status ``failed``) or died (no outcome after ``lock_stale_seconds``) is taken
over with ``If-Match`` on its ETag, so a retry still rolls back.

Missing endpoints, variants or configs are reported (log, SNS, record), never
raised: an exception would only make Lambda retry something that cannot work.
Transient AWS errors do raise, so Lambda's own retries apply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError
from rollback_settings import Settings

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")

TAG_PHASE = "llmq:phase"
TAG_MODEL = "llmq:model-name"
TAG_RUN = "llmq:run-id"
TAG_PACKAGE = "llmq:model-package-arn"
TAG_LAST_APPROVED = "llmq:last-approved-config"
PHASE_CANARY = "canary"
PHASE_PROMOTED = "promoted"
PHASE_ROLLED_BACK = "rolled-back"
SIGNALS = ("latency-p95", "latency-p95-vs-baseline", "5xx", "4xx", "quality")
COMPOSITE_SUFFIX = "canary"
_CONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

Outcome = Literal[
    "rolled-back",  # traffic is (being) moved back; record written, package rejected, notified
    "duplicate",  # another invocation owns this rollback
    "ignored",  # not an ALARM of a candidate, or the endpoint is in no phase to roll back
    "endpoint-missing",  # reported: nothing to roll back
    "untracked",  # reported: the endpoint lacks the run tags, so there is no run to roll back
    "not-possible",  # reported: variant or last approved config missing
]


class RollbackImpossibleError(Exception):
    """The endpoint's state rules out the rollback (missing variant or config); report, do not retry."""


class Clients(Protocol):
    @property
    def sagemaker(self) -> Any: ...
    @property
    def s3(self) -> Any: ...
    @property
    def sns(self) -> Any: ...


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


def endpoint_for_alarm(alarm_name: str, settings: Settings) -> tuple[str, str | None] | None:
    """(endpoint, variant or None for the composite) for an alarm named per docs/contracts.md."""
    for endpoint in sorted(settings.monitored_endpoints, key=len, reverse=True):
        if not alarm_name.startswith(f"{endpoint}-"):
            continue
        rest = alarm_name[len(endpoint) + 1 :]
        if rest == COMPOSITE_SUFFIX:
            return endpoint, None
        for variant in (settings.baseline_variant, settings.candidate_variant):
            if rest.startswith(f"{variant}-") and rest[len(variant) + 1 :] in SIGNALS:
                return endpoint, variant
    return None


def record_key(model_name: str, run_id: str, endpoint: str, phase: str) -> str:
    """Where the rollback record (and lock) of one run lives in the artifact bucket."""
    return f"models/{model_name}/{run_id}/rollbacks/{endpoint}-{phase}.json"


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
        abandoned = previous.get("status") == "failed" or (
            previous.get("status") == "in-progress" and age > self.stale_seconds
        )
        if not abandoned:
            logger.info("rollback already claimed", extra={"record": self.uri, "status": previous.get("status")})
            return False
        # Kept in the final record too: it shows the rollback needed a second attempt.
        record["takes_over"] = previous.get("status")
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


def shift_traffic_to_baseline(sagemaker: Any, endpoint: dict[str, Any], settings: Settings) -> dict[str, Any]:
    variants = {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}
    missing = [v for v in (settings.baseline_variant, settings.candidate_variant) if v not in variants]
    if missing:
        raise RollbackImpossibleError(
            f"endpoint {endpoint['EndpointName']} has no variant {', '.join(missing)} (has: {', '.join(variants)})"
        )
    weights = {settings.candidate_variant: 0.0, settings.baseline_variant: 100.0}
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint["EndpointName"],
        DesiredWeightsAndCapacities=[{"VariantName": name, "DesiredWeight": w} for name, w in weights.items()],
    )
    return {"type": "shift-traffic", "weights": weights}


def restore_last_approved_config(sagemaker: Any, endpoint: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    name, current = endpoint["EndpointName"], endpoint.get("EndpointConfigName")
    target = tags.get(TAG_LAST_APPROVED)
    if not target:
        raise RollbackImpossibleError(f"endpoint {name} is promoted but has no {TAG_LAST_APPROVED} tag")
    if target == current:
        return {"type": "restore-config", "from": current, "to": target, "note": "already serving it"}
    try:
        sagemaker.describe_endpoint_config(EndpointConfigName=target)
    except ClientError as exc:
        if _is_not_found(exc):
            message = f"last approved endpoint config {target} of {name} no longer exists"
            raise RollbackImpossibleError(message) from None
        raise
    # A plain UpdateEndpoint: SageMaker's blue/green replacement keeps serving the
    # current fleet until the restored one is in service.
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=target, RetainAllVariantProperties=False)
    return {"type": "restore-config", "from": current, "to": target}


def roll_back(
    alarm: Alarm,
    *,
    settings: Settings,
    clients: Clients,
    request_id: str = "",
    clock: Callable[[], float] = time.monotonic,
) -> RollbackReport:
    """Handle one alarm state change; see the module docstring for what happens when."""
    started = clock()
    report = RollbackReport(outcome="ignored", alarm=alarm.name)
    if not _triage(alarm, settings, report):
        return report
    state = _read_endpoint(clients, settings, report)
    if state is None:
        return report
    endpoint, tags = state
    assert report.model_name and report.run_id and report.phase and report.endpoint
    key = record_key(report.model_name, report.run_id, report.endpoint, report.phase)
    lock = RollbackLock(clients.s3, settings.artifact_bucket, key, settings.lock_stale_seconds)
    report.record_uri = lock.uri
    record: dict[str, Any] = {
        "schema": 1,
        "status": "in-progress",
        "endpoint": report.endpoint,
        "model_name": report.model_name,
        "run_id": report.run_id,
        "phase_before": report.phase,
        "endpoint_config_before": endpoint.get("EndpointConfigName"),
        "model_package_arn": tags.get(TAG_PACKAGE),
        "alarm": {"name": alarm.name, "arn": alarm.arn, "reason": alarm.reason, "changed_at": alarm.changed_at},
        "who": {"actor": "alarm-driven rollback", "function": settings.function_name, "request_id": request_id},
        "claimed_at": _now_iso(),
        "claimed_at_epoch": time.time(),
    }
    if not lock.claim(record):
        report.outcome = "duplicate"
        report.detail = f"rollback already claimed in {lock.uri}"
        return report

    try:
        if report.phase == PHASE_CANARY:
            report.action = shift_traffic_to_baseline(clients.sagemaker, endpoint, settings)
        else:
            report.action = restore_last_approved_config(clients.sagemaker, endpoint, tags)
    except RollbackImpossibleError as exc:
        report.outcome, report.detail = "not-possible", str(exc)
        logger.error(report.detail, extra={"alarm": alarm.name, "endpoint": report.endpoint})
        lock.write({**record, "status": "not-possible", "detail": report.detail, "completed_at": _now_iso()})
        _notify(clients.sns, settings, report)
        return report
    except Exception as exc:
        # Transient (throttling, endpoint busy updating): free the claim for the retry.
        lock.write({**record, "status": "failed", "detail": repr(exc), "completed_at": _now_iso()})
        raise
    report.seconds_to_traffic_call = clock() - started
    alarm_epoch = alarm.changed_at_epoch()
    if alarm_epoch is not None:
        report.seconds_from_alarm = max(0.0, time.time() - alarm_epoch)
    report.outcome = "rolled-back"
    report.detail = f"{report.action['type']} on {report.endpoint} after alarm {alarm.name}"
    logger.warning(report.detail, extra={"action": report.action, "record": lock.uri})

    record.update(status="done", action=report.action, traffic_call_returned_at=_now_iso())
    _tag_rolled_back(clients.sagemaker, endpoint["EndpointArn"], report)
    record["model_package"] = _reject_package(clients.sagemaker, tags.get(TAG_PACKAGE), alarm, lock.uri, report)
    record.update(problems=report.problems, completed_at=_now_iso())
    lock.write(record)
    _notify(clients.sns, settings, report)
    return report


def _triage(alarm: Alarm, settings: Settings, report: RollbackReport) -> bool:
    """True if the alarm is a candidate (or composite) ALARM of a monitored endpoint."""
    if alarm.state != "ALARM":
        report.detail = f"alarm state is {alarm.state}, not ALARM"
    elif (target := endpoint_for_alarm(alarm.name, settings)) is None:
        report.detail = "alarm does not belong to a monitored endpoint (docs/contracts.md names)"
    elif target[1] == settings.baseline_variant:
        report.endpoint = target[0]
        # Moving traffic onto the variant that is alarming would make things worse.
        report.detail = "baseline alarms are for the dashboard; only candidate alarms roll back"
    else:
        report.endpoint = target[0]
        return True
    logger.info(report.detail, extra={"alarm": alarm.name})
    return False


def _read_endpoint(
    clients: Clients, settings: Settings, report: RollbackReport
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The endpoint and its tags if it is in a phase to roll back; otherwise report why not."""
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
    if report.phase not in (PHASE_CANARY, PHASE_PROMOTED):
        report.detail = f"endpoint phase is {report.phase!r}: nothing to roll back"
        logger.info(report.detail, extra={"alarm": report.alarm, "endpoint": report.endpoint})
        return None
    if not report.model_name or not report.run_id:
        report.outcome = "untracked"
        report.detail = f"endpoint {report.endpoint} is {report.phase} but lacks {TAG_MODEL}/{TAG_RUN} tags"
        logger.error(report.detail, extra={"alarm": report.alarm, "tags": tags})
        _notify(clients.sns, settings, report)
        return None
    return endpoint, tags


def _tag_rolled_back(sagemaker: Any, endpoint_arn: str, report: RollbackReport) -> None:
    try:
        sagemaker.add_tags(ResourceArn=endpoint_arn, Tags=[{"Key": TAG_PHASE, "Value": PHASE_ROLLED_BACK}])
    except ClientError as exc:
        report.problems.append(f"could not tag the endpoint {PHASE_ROLLED_BACK}: {exc}")
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
