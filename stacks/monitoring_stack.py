"""Monitoring: per-variant canary alarms, the rollback rule and function, a dashboard.

The quality sampler publishes the live-quality metrics the quality alarms watch.
Rollback does not depend on a running execution: every ALARM of a rollback
alarm (candidate or serving variant) or of the composite reaches the rollback
function through EventBridge, during the canary or after promotion; the function
decides by the endpoint's phase. The absolute latency alarms and the function's
own RollbackFailed alarm notify the rollback topic.
"""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from constructs import Construct

from stacks.endpoint_monitoring import EndpointMonitoring
from stacks.input_drift_monitoring import InputDriftMonitoring
from stacks.python_function import dependency_layer
from stacks.quality_sampler_function import QualitySamplerFunction
from stacks.rollback_function import (
    METRICS_NAMESPACE,
    ROLLBACK_FAILED_DIMENSIONS,
    ROLLBACK_FAILED_METRIC,
    RollbackFunction,
)
from stacks.shared_resources import SharedResources


def _construct_id(endpoint: str) -> str:
    return "Endpoint" + "".join(part.title() for part in re.split(r"[^a-zA-Z0-9]+", endpoint))


class MonitoringStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, shared: SharedResources, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = shared.config
        prefix = shared.prefix
        with_layer = shared.with_layer(dependency_layer(self, "Dependencies"))
        self.rollback = RollbackFunction(self, "Rollback", with_layer)
        # Publishes what the quality alarms watch (LLMQ/Quality, contracts/live_quality.py).
        self.quality_sampler = QualitySamplerFunction(self, "QualitySampler", with_layer)
        self.endpoints: dict[str, EndpointMonitoring] = {}
        self.rules: dict[str, events.Rule] = {}
        for name in config.monitored_endpoints:
            monitoring = EndpointMonitoring(
                self,
                _construct_id(name),
                endpoint_name=name,
                thresholds=config.monitoring,
                serving_variant=config.serving_variant,
            )
            self.endpoints[name] = monitoring
            # The key policy admits CloudWatch alarms of this account (stacks/storage_stack.py).
            for alarm in monitoring.notify_only_alarms:
                alarm.add_alarm_action(cw_actions.SnsAction(self.rollback.topic))
            self.rules[name] = events.Rule(
                monitoring,
                "RollbackOnAlarm",
                rule_name=f"{name}-rollback",
                description=f"Rollback alarm of {name} in ALARM -> rollback function (acts by phase)",
                event_pattern=events.EventPattern(
                    source=["aws.cloudwatch"],
                    detail_type=["CloudWatch Alarm State Change"],
                    detail={"alarmName": monitoring.rollback_alarm_names, "state": {"value": ["ALARM"]}},
                ),
                targets=[self.rollback.rule_target()],
            )

        # Input drift (notify only) where the stage captures data: stacks/input_drift_monitoring.py.
        self.input_drift = (
            InputDriftMonitoring(self, "InputDrift", shared=with_layer, topic=self.rollback.topic)
            if config.data_capture.enabled and config.monitored_endpoints
            else None
        )

        self.rollback_failed_alarm = cw.Alarm(
            self,
            "RollbackFailedAlarm",
            alarm_name=f"{prefix}-rollback-failed",
            alarm_description="The rollback function could not bring an endpoint back to its expected state "
            "(llmq:phase=rollback-failed); the function stays armed, a person must look now",
            metric=cw.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=ROLLBACK_FAILED_METRIC,
                dimensions_map=ROLLBACK_FAILED_DIMENSIONS,
                statistic="Sum",
                period=Duration.minutes(1),
            ),
            threshold=0,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.rollback_failed_alarm.add_alarm_action(cw_actions.SnsAction(self.rollback.topic))

        rows: list[list[cw.IWidget]] = []
        for monitoring in self.endpoints.values():
            rows.extend(monitoring.dashboard_widgets())
        rows.append(self._rollback_function_row())
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{prefix}-canaries", widgets=rows)
        CfnOutput(self, "RollbackTopicArn", value=self.rollback.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard_name)

    def _rollback_function_row(self) -> list[cw.IWidget]:
        function = self.rollback.function
        return [
            cw.GraphWidget(
                title="rollback function",
                left=[function.metric_invocations(), function.metric_errors(), function.metric_throttles()],
                width=12,
                height=6,
            ),
            cw.GraphWidget(
                title="rollback function duration",
                left=[function.metric_duration(statistic="p95")],
                width=12,
                height=6,
            ),
        ]
