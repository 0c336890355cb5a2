"""The live-quality sampler: a scheduled function that publishes what the quality alarms watch.

It runs every half quality period (so every alarm period of a bake step holds at least one
datapoint), reads each monitored endpoint's tags, and during a canary (or for a while after
promotion) sends the run's review prompts to the judged variant with ``TargetVariant``, then
publishes contracts/live_quality.py's metrics (lambda/quality_sampler/, docs/monitoring.md).

Least privilege:
- ``cloudwatch:PutMetricData`` only into ``LLMQ/Quality`` (condition ``cloudwatch:namespace``;
  PutMetricData has no resource type, so the resource is ``*``);
- ``sagemaker:DescribeEndpoint``, ``sagemaker:ListTags`` and ``sagemaker:InvokeEndpoint`` on the
  monitored endpoints by exact name (TargetVariant is a parameter of InvokeEndpoint, authorized
  on the endpoint like any invocation);
- ``s3:GetObject`` of the runs' review samples and references, ``s3:PutObject`` of references only;
- on a stage that captures: ``s3:ListBucket`` under capture prefixes only (``s3:prefix`` condition)
  and ``s3:GetObject`` of capture files (the recent captured prompts it adds during a canary);
- the project key for those SSE-KMS objects (``kms:Decrypt``, ``kms:GenerateDataKey``).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts.artifact_layout import CAPTURE_PATTERN, QUALITY_REFERENCES_PATTERN, REVIEW_PATTERN
from contracts.endpoint_tags import CANDIDATE_VARIANT
from contracts.function_settings import QualitySamplerSettings
from contracts.live_quality import NAMESPACE
from stacks.config import StageConfig
from stacks.evaluate_role import endpoint_arns
from stacks.nag import acknowledge
from stacks.python_function import scheduled_function
from stacks.rollback_function import nag_label
from stacks.shared_resources import SharedResources

# One run judges at most max_prompts x 2 requests per endpoint (x 2 more when it writes the
# reference), each under InvokeEndpoint's 60 s limit; runs that overlap are harmless (the
# reference is written once, conditionally; a period may average two datapoints).
TIMEOUT_SECONDS = 300
MIN_SECONDS_PER_ENDPOINT = 75


def schedule_minutes(quality_period_seconds: int) -> int:
    """Every half quality period, in whole minutes (EventBridge's rate is minutes at the finest)."""
    return max(1, quality_period_seconds // 120)


class QualitySamplerFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, shared: SharedResources) -> None:
        super().__init__(scope, construct_id)
        config = shared.config
        thresholds = config.monitoring
        minutes = schedule_minutes(thresholds.quality_period_seconds)
        self.python_function, self.rule = scheduled_function(
            self,
            "QualitySampler",
            shared,
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
            rule_name=f"{shared.prefix}-quality-sampler",
            rule_description=f"Every {minutes} min: sample canaried and just-promoted variants (LLMQ/Quality)",
            # A missed run is not retried: the next one samples again minutes later.
            retry_attempts=0,
            name="quality_sampler",
            description="Live quality of canaried and just-promoted variants -> LLMQ/Quality (schedule)",
            environment=QualitySamplerSettings.environment(
                artifact_bucket=shared.bucket.bucket_name,
                monitored_endpoints=config.monitored_endpoints,
                serving_variant=config.serving_variant,
                candidate_variant=CANDIDATE_VARIANT,
                max_prompts=thresholds.quality_sample_prompts,
                max_new_tokens=thresholds.quality_sample_max_new_tokens,
                after_promotion_seconds=thresholds.quality_sample_after_promotion_minutes * 60,
                min_seconds_per_endpoint=MIN_SECONDS_PER_ENDPOINT,
                captured_prompts=self.captured_prompts(config),
            ),
            timeout_seconds=TIMEOUT_SECONDS,
            memory_size=256,
        )
        self.function = self.python_function.function
        # Nor is an asynchronous invoke (Lambda's own retries).
        self.function.configure_async_invoke(retry_attempts=0, max_event_age=Duration.minutes(5))
        self._grant(shared)

    @staticmethod
    def captured_prompts(config: StageConfig) -> int:
        """Captured prompts per canary sample: the stage's setting where it captures, else none."""
        return config.monitoring.quality_sample_captured_prompts if config.data_capture.enabled else 0

    def _grant(self, shared: SharedResources) -> None:
        role = self.python_function.role
        bucket = shared.bucket
        if self.captured_prompts(shared.config):
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ListCapture",
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [CAPTURE_PATTERN]}},
                )
            )
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadCapture", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(CAPTURE_PATTERN)]
                )
            )
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_label(self, bucket)}/{CAPTURE_PATTERN}]",
                "capture files live under each run's prefix (models/<model>/<run_id>/capture/), unknown at deploy time",
            )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishQualityMetricsOnly",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
            )
        )
        endpoints = endpoint_arns(Stack.of(self), shared.config.monitored_endpoints, shared.prefix)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadAndInvokeMonitoredEndpoints",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags", "sagemaker:InvokeEndpoint"],
                resources=endpoints,
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadReviewPromptsAndReferences",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(REVIEW_PATTERN), bucket.arn_for_objects(QUALITY_REFERENCES_PATTERN)],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteReferencesOnly",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(QUALITY_REFERENCES_PATTERN)],
            )
        )
        shared.key.grant(role, "kms:Decrypt", "kms:GenerateDataKey")
        label = nag_label(self, bucket)
        why = {
            f"{label}/{REVIEW_PATTERN}": "each run's review sample (models/<model>/<run_id>/reports/review.json), "
            "the sampler's prompts; the run is known only from the endpoint's tags at run time. Read only.",
            f"{label}/{QUALITY_REFERENCES_PATTERN}": "each run's quality reference "
            "(models/<model>/<run_id>/quality/), written once during the run's canary and read after promotion.",
        }
        if not shared.config.monitored_endpoints:
            why[f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint/{shared.prefix.lower()}-*"] = (
                "no monitored endpoint configured: the stage prefix admits only this stage's endpoints."
            )
        for resource, reason in why.items():
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
