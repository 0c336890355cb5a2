"""Security and storage: the project KMS key and the artifact bucket."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.artifact_store import ArtifactStore
from stacks.config import StageConfig
from stacks.encryption import ProjectKey


class StorageStack(Stack):
    """Long-lived state, deployed apart so that a pipeline change never risks keys or buckets."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = ProjectKey(self, "ProjectKey", alias=f"alias/{config.resource_prefix}").key
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
