"""The rollback function, its notification topic and its least-privilege role.

The function (lambda/rollback/) may change only the monitored endpoints
(``StageConfig.monitored_endpoints``, by exact name) and model packages in
``<prefix>-*`` groups. It reads and restores endpoint configs of ANY name
(``endpoint-config/*``): after promotion it restores the config that served
before the run, which may be the platform team's own (docs/contracts.md). It
writes only rollback records (``models/*/rollbacks/*``) in the artifact bucket
and publishes only to its own topic.
"""

from __future__ import annotations

import hashlib
import json
import re

from aws_cdk import Duration, Stack
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from contracts import artifact_layout
from contracts.endpoint_tags import CANDIDATE_VARIANT
from contracts.function_settings import RollbackSettings
from stacks.nag import acknowledge
from stacks.python_function import PythonFunction
from stacks.shared_resources import SharedResources
from stacks.topics import encrypted_topic
from stacks.variant_autoscaling_grants import grant_variant_autoscaling

ROLLBACK_RECORDS = artifact_layout.ROLLBACK_RECORDS_PATTERN
METRICS_NAMESPACE = "LLMQ/Rollback"
# Longer than the function timeout, so a live invocation's claim is never taken over.
LOCK_STALE_SECONDS = 900
# One invocation waits up to WAIT_IN_SERVICE_SECONDS before acting and again after; a
# blue/green restore that takes longer is continued by Lambda's async retries.
TIMEOUT_SECONDS = 600
WAIT_IN_SERVICE_SECONDS = 240
POLL_SECONDS = 10
RETRY_ATTEMPTS = 2
# After promotion, alarms roll back for this long after llmq:promoted-at (0: forever).
PROMOTED_ROLLBACK_WINDOW_SECONDS = 86400
# Published by the handler when a rollback did not reach its expected state.
ROLLBACK_FAILED_METRIC = "RollbackFailed"
ROLLBACK_FAILED_DIMENSIONS = {"service": "rollback", "Outcome": "rollback-failed"}


class RollbackFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, shared: SharedResources) -> None:
        super().__init__(scope, construct_id)
        resource_prefix = shared.prefix
        monitored_endpoints = shared.config.monitored_endpoints
        bucket = shared.bucket
        key = shared.key
        self.topic = encrypted_topic(
            self,
            "Notifications",
            key=key,
            topic_name=f"{resource_prefix}-rollbacks",
            display_name="LLM canary rollbacks",
        )
        self.python_function = PythonFunction(
            self,
            "Rollback",
            name="rollback",
            description="Alarm-driven rollback of canaried SageMaker endpoints (EventBridge, any time)",
            environment={
                **RollbackSettings.environment(
                    artifact_bucket=bucket.bucket_name,
                    topic_arn=self.topic.topic_arn,
                    resource_prefix=resource_prefix,
                    monitored_endpoints=monitored_endpoints,
                    lock_stale_seconds=LOCK_STALE_SECONDS,
                    baseline_variant=shared.config.serving_variant,
                    candidate_variant=CANDIDATE_VARIANT,
                    wait_in_service_seconds=WAIT_IN_SERVICE_SECONDS,
                    poll_seconds=POLL_SECONDS,
                    max_attempts=RETRY_ATTEMPTS + 1,
                    promoted_window_seconds=PROMOTED_ROLLBACK_WINDOW_SECONDS,
                ),
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            timeout_seconds=TIMEOUT_SECONDS,
            memory_size=512,
            **shared.function_options(),
        )
        self.function = self.python_function.function
        role = self.python_function.role
        # Lambda retries a failed asynchronous invocation twice (the claim is freed
        # for them); when those fail too, operators hear it on the same topic.
        self.function.configure_async_invoke(
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=Duration.hours(1),
            on_failure=destinations.SnsDestination(self.topic),
        )
        # topic.grant_publish would add kms:GenerateDataKey*; publishing to the encrypted topic
        # and writing SSE-KMS records both need exactly kms:GenerateDataKey (and Decrypt to read).
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="NotifyOwnTopic", actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        # Exactly the two object calls of the record/lock; bucket.grant_put/grant_read would add
        # s3:Abort*, s3:List*, s3:GetBucket*, kms:ReEncrypt* and more that the function never makes.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RollbackRecordsOnly",
                actions=["s3:PutObject", "s3:GetObject"],
                # Its own records, and a run's lifted-autoscaling record (restored with the rollback).
                resources=[
                    bucket.arn_for_objects(ROLLBACK_RECORDS),
                    bucket.arn_for_objects(artifact_layout.AUTOSCALING_RECORDS_PATTERN),
                ],
            )
        )
        key.grant(role, "kms:GenerateDataKey", "kms:Decrypt")
        self._grant_sagemaker(role, resource_prefix, monitored_endpoints, key)
        self._acknowledge_prefix_scoped_resources(role, bucket)

    def _grant_sagemaker(self, role: iam.IRole, prefix: str, monitored: tuple[str, ...], key: kms.IKey) -> None:
        stack = Stack.of(self)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        # Exactly the monitored endpoints; with none configured, nothing but the stage prefix.
        endpoints = [arn("endpoint", name) for name in monitored] or [arn("endpoint", f"{prefix}-*")]
        configs = arn("endpoint-config", "*")
        packages = arn("model-package", f"{prefix}-*/*")
        # A restore onto another instance type lifts and restores the serving variant's autoscaling.
        grant_variant_autoscaling(role, endpoints)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadTagAndShiftMonitoredEndpoints",
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:ListTags",
                    "sagemaker:AddTags",
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                    "sagemaker:UpdateEndpoint",
                ],
                resources=endpoints,
            )
        )
        # UpdateEndpoint authorizes on the endpoint AND on the endpoint config it deploys
        # (Service Authorization Reference); the config restored after promotion may be the
        # platform team's own, of any name, so configs are not prefix-scoped.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RestoreAnyLastApprovedEndpointConfig",
                actions=["sagemaker:DescribeEndpointConfig", "sagemaker:UpdateEndpoint"],
                resources=[configs],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RejectProjectModelPackages",
                actions=["sagemaker:UpdateModelPackage"],
                resources=[packages],
            )
        )
        # Restoring an endpoint config encrypted with the project key makes SageMaker
        # create a grant on it for the new instances' volumes, on the caller's behalf.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LetSageMakerUseTheKeyForRestoredEndpoints",
                actions=["kms:CreateGrant", "kms:DescribeKey"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        # The same patterns as cdk-nag spells them in finding ids (pseudo parameters as <AWS::...>).
        nag_arn = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        self._endpoint_arn_pattern = None if monitored else f"{nag_arn}:endpoint/{prefix}-*"
        self._config_arn_pattern = f"{nag_arn}:endpoint-config/*"
        self._package_arn_pattern = f"{nag_arn}:model-package/{prefix}-*/*"

    def rule_target(self) -> targets.LambdaFunction:
        """EventBridge target: retried for a day if Lambda throttles the delivery."""
        return targets.LambdaFunction(self.function, retry_attempts=8, max_event_age=Duration.hours(24))

    def _acknowledge_prefix_scoped_resources(self, role: iam.IRole, bucket: s3.IBucket) -> None:
        """cdk-nag IAM5: the wildcards left are name prefixes of this project's resources."""
        why = {
            self._config_arn_pattern: "UpdateEndpoint authorizes on the endpoint config it deploys too; after "
            "promotion the function restores llmq:last-approved-config, the config that served before the run, "
            "which may be the platform team's own of any name. The endpoints it may update are scoped to the "
            "monitored ones by exact name, so a config can only be deployed onto those.",
            self._package_arn_pattern: "model package versions are registered per run; the group prefix admits "
            "only this stage's package groups.",
            f"{nag_label(self, bucket)}/{ROLLBACK_RECORDS}": "records live under each run's prefix "
            "(models/<model>/<run_id>/rollbacks/), unknown at deploy time; nothing else in the bucket is reachable.",
            f"{nag_label(self, bucket)}/{artifact_layout.AUTOSCALING_RECORDS_PATTERN}": "a run's lifted-autoscaling "
            "record (models/<model>/<run_id>/autoscaling/), which the rollback restores and marks restored.",
        }
        if self._endpoint_arn_pattern:
            why[self._endpoint_arn_pattern] = (
                "no monitored endpoint configured: the prefix admits only this stage's endpoints."
            )
        for resource, reason in why.items():
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Added by the on-failure SnsDestination (topic.grantPublish) and limited to the project key that "
            "encrypts the topic; publishing to an encrypted topic needs a data key.",
        )


def nag_label(scope: Construct, bucket: s3.IBucket) -> str:
    """How cdk-nag spells ``bucket``'s ARN inside a finding id of a policy in ``scope``'s stack.

    cdk-nag v3 only accepts exact finding ids. A bucket of another stack appears
    as the name of CDK's generated export (``<stack>:ExportsOutput...<hash>``);
    this repeats CDK's naming (refs.ts ``generateExportName`` / ``makeUniqueId``).
    If CDK ever names exports differently, synth fails on an unacknowledged
    finding instead of silently widening anything.
    """
    owner = Stack.of(bucket)
    reference = owner.resolve(bucket.bucket_arn)
    if isinstance(reference, str):  # an imported bucket with a literal ARN
        return reference
    logical_id = reference["Fn::GetAtt"][0]
    if owner is Stack.of(scope):
        return f"<{logical_id}.Arn>"
    components = ["Exports", "Output" + json.dumps(reference, separators=(",", ":"))]
    human = "".join(re.sub(r"[^A-Za-z0-9]", "", part) for part in components)
    digest = hashlib.md5("/".join(components).encode(), usedforsecurity=False).hexdigest()[:8].upper()
    return f"{owner.stack_name}:{human}{digest}"
