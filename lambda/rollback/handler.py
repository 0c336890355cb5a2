"""Rollback function: an alarm state change (EventBridge) -> rollback_logic.roll_back."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import CloudWatchAlarmEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from rollback_logic import roll_back
from rollback_model import ROLLBACK_FAILED_METRIC, Alarm, as_alarm_action_event
from rollback_settings import AwsClients, load_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(raw_event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # EventBridge delivers "CloudWatch Alarm State Change" events; CloudWatchAlarmEvent
    # types the alarm-action shape, which carries the same detail under other keys.
    event = CloudWatchAlarmEvent(as_alarm_action_event(raw_event))
    data = event.alarm_data
    alarm = Alarm(
        name=data.alarm_name,
        state=data.state.value,
        reason=data.state.reason,
        arn=event.alarm_arn,
        changed_at=data.state.timestamp or event.timestamp,
    )
    report = roll_back(alarm, settings=load_settings(), clients=AwsClients(), request_id=context.aws_request_id)
    metrics.add_dimension(name="Outcome", value=report.outcome)
    metrics.add_metric(name="RollbackEvents", unit=MetricUnit.Count, value=1)
    if report.outcome == "rollback-failed":
        # Alarmed on in the monitoring stack (dimensions service=rollback, Outcome=rollback-failed).
        metrics.add_metric(name=ROLLBACK_FAILED_METRIC, unit=MetricUnit.Count, value=1)
    if report.seconds_from_alarm is not None:
        metrics.add_metric(name="SecondsFromAlarmToTraffic", unit=MetricUnit.Seconds, value=report.seconds_from_alarm)
    if report.seconds_to_traffic_call is not None:
        seconds = report.seconds_to_traffic_call
        metrics.add_metric(name="HandlerSecondsToTraffic", unit=MetricUnit.Seconds, value=seconds)
    logger.info("rollback handled", extra={"report": report.as_dict()})
    return report.as_dict()
