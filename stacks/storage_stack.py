"""Security and storage: the project KMS key and the artifact bucket."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.artifact_store import ArtifactStore
from stacks.config import StageConfig
from stacks.encryption import ProjectKey


class StorageStack(Stack):
    """Long-lived state, deployed apart so that a pipeline change never risks keys or buckets."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = ProjectKey(self, "ProjectKey", alias=f"alias/{config.resource_prefix}").key
        # SNS topics encrypted with this key (rollback notifications, pipeline outcomes) receive
        # CloudWatch alarm actions; CloudWatch drops them unless the key policy lets it use the
        # key (SNS developer guide, key management: compatibility with AWS services). Only on
        # behalf of this account's alarms (confused deputy: aws:SourceAccount, aws:SourceArn).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccountToPublishToEncryptedTopics",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{self.partition}:cloudwatch:{self.region}:{self.account}:alarm:*"
                    },
                },
            )
        )
        store = ArtifactStore(
            self,
            "ArtifactStore",
            key=self.key,
            noncurrent_version_days=config.noncurrent_version_days,
            access_log_days=config.log_retention_days,
        )
        self.artifact_bucket = store.bucket
        self.access_log_bucket = store.log_bucket
        CfnOutput(self, "ArtifactBucketName", value=self.artifact_bucket.bucket_name)
        CfnOutput(self, "KeyArn", value=self.key.key_arn)
