"""The input-drift check: a scheduled function (lambda/input_drift/) and its notify-only alarms.

Built by the monitoring stack only when the stage captures data (``data_capture.sampling_percentage``
above 0) and has monitored endpoints. Every ``drift_check_hours`` the function reads the recent
capture files of each monitored endpoint in phase ``canary`` or ``promoted``, compares the prompts
with the calibration set of the run its tags name, and publishes both statistics
(contracts/input_drift.py). One alarm per statistic and endpoint notifies the monitoring topic;
none rolls back: drift says the calibration set no longer resembles the traffic, which is a
reason to re-calibrate, not evidence that the model got worse.

The function may read only what it needs: the monitored endpoints (DescribeEndpoint, ListTags), capture
files and manifests under ``models/`` (and list the bucket only under ``models/``), decrypt with the
project key, and put metric data only in its own namespace (``cloudwatch:namespace`` condition).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts import artifact_layout, input_drift
from contracts.function_settings import InputDriftSettings
from stacks.nag import acknowledge
from stacks.python_function import scheduled_function
from stacks.rollback_function import nag_label
from stacks.shared_resources import SharedResources

TIMEOUT_SECONDS = 300
MAX_FILES = 500
RECALIBRATE = (
    "python -m stacks.operator_commands calibration-from-capture s3://<bucket>/models/<model>/<run>/capture/ "
    "--out calibration.jsonl"
)


class InputDriftMonitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, shared: SharedResources, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        config = shared.config
        capture = config.data_capture
        endpoints = config.monitored_endpoints
        self.python_function, self.schedule = scheduled_function(
            self,
            "Function",
            shared,
            schedule=events.Schedule.rate(Duration.hours(capture.drift_check_hours)),
            rule_description="Input-drift check of the monitored endpoints",
            retry_attempts=2,
            name="input_drift",
            description="Scheduled input-drift check: captured prompts vs the model's calibration set",
            environment=InputDriftSettings.environment(
                artifact_bucket=shared.bucket.bucket_name,
                monitored_endpoints=endpoints,
                lookback_hours=capture.drift_lookback_hours,
                max_files=MAX_FILES,
            ),
            timeout_seconds=TIMEOUT_SECONDS,
            memory_size=512,
            # One check at a time: a slow one must not overlap the next.
            reserved_concurrency=1,
        )
        self.function = self.python_function.function
        self._grant(shared)
        self.alarms: dict[tuple[str, str], cw.Alarm] = {}
        for endpoint in endpoints:
            for metric_name, threshold in input_drift.THRESHOLDS.items():
                alarm = self._alarm(endpoint, metric_name, threshold, capture.drift_check_hours)
                alarm.add_alarm_action(cw_actions.SnsAction(topic))
                self.alarms[(endpoint, metric_name)] = alarm

    def _alarm(self, endpoint: str, metric_name: str, threshold: float, hours: int) -> cw.Alarm:
        name = input_drift.alarm_name(endpoint, metric_name)
        return cw.Alarm(
            self,
            "".join(part.title() for part in name.split("-")),
            alarm_name=name,
            alarm_description=(
                f"Prompts captured on {endpoint} drifted from the calibration set of the model it serves "
                f"({metric_name} above {threshold:g}, contracts/prompt_drift.py). Notify only, no rollback: "
                f"consider re-calibrating on captured traffic ({RECALIBRATE}) and quantizing again."
            ),
            metric=cw.Metric(
                namespace=input_drift.NAMESPACE,
                metric_name=metric_name,
                dimensions_map={input_drift.ENDPOINT_DIMENSION: endpoint},
                statistic="Maximum",
                period=Duration.hours(hours),
                unit=cw.Unit.NONE,
            ),
            threshold=threshold,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # No datapoint: not judged (too few prompts, no capture, not canary/promoted).
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _grant(self, shared: SharedResources) -> None:
        role = self.python_function.role
        stack = Stack.of(self)
        bucket = shared.bucket
        endpoints = [
            stack.format_arn(service="sagemaker", resource="endpoint", resource_name=name)
            for name in shared.config.monitored_endpoints
        ]
        statements = [
            iam.PolicyStatement(
                sid="ReadMonitoredEndpoints",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags"],
                resources=endpoints,
            ),
            iam.PolicyStatement(
                sid="ListCapture",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [artifact_layout.CAPTURE_PATTERN]}},
            ),
            iam.PolicyStatement(
                sid="ReadCaptureAndManifests",
                actions=["s3:GetObject"],
                resources=[
                    bucket.arn_for_objects(artifact_layout.CAPTURE_PATTERN),
                    bucket.arn_for_objects(artifact_layout.MANIFEST_PATTERN),
                ],
            ),
            iam.PolicyStatement(
                sid="PublishDriftMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": input_drift.NAMESPACE}},
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        shared.key.grant(role, "kms:Decrypt")
        label = nag_label(self, bucket)
        for pattern, why in (
            (artifact_layout.CAPTURE_PATTERN, "capture files live under each run's prefix, unknown at deploy time"),
            (artifact_layout.MANIFEST_PATTERN, "the run's manifest holds the calibration profile; runs are unknown"),
        ):
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{label}/{pattern}]", why)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "PutMetricData supports no resource; the statement is limited to the LLMQ/InputDrift namespace.",
        )
