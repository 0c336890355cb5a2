"""The record function (lambda/record_package/): verifies the quantize manifest, registers the model package.

Least privilege: it reads a run's outputs (``models/*``), writes only the manifest copy
(``models/*/manifest.json``), uses the project key for both, and creates, describes and
tags model package groups and packages of the stage prefix; ListModelPackages has no
resource-level permissions. Each remaining wildcard is acknowledged for cdk-nag by its
exact finding id.

A ``PythonFunction`` itself rather than a construct holding one: the stack creates it
with the id it always had (``RecordPackage``), so the function, role, policy and log
group keep their construct paths, hence their logical ids.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts.artifact_layout import MANIFEST_PATTERN, RUN_OBJECTS_PATTERN
from stacks.nag import acknowledge
from stacks.pipeline_nag import token_text
from stacks.python_function import PythonFunction
from stacks.shared_resources import SharedResources


class RecordPackageFunction(PythonFunction):
    def __init__(self, scope: Construct, construct_id: str, shared: SharedResources) -> None:
        prefix = shared.prefix
        bucket = shared.bucket
        super().__init__(
            scope,
            construct_id,
            name="record_package",
            description="Verifies the quantize manifest and registers the model package",
            timeout_seconds=120,
            **shared.function_options(),
        )
        stack = Stack.of(self)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadRunOutputs", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(RUN_OBJECTS_PATTERN)]
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteManifest",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(MANIFEST_PATTERN)],
            )
        )
        shared.key.grant(self.role, "kms:Decrypt", "kms:GenerateDataKey")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ModelPackages",
                actions=[
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:CreateModelPackageGroup",
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:AddTags",
                ],
                resources=[
                    stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=f"{prefix}-*"),
                    stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{prefix}-*"),
                ],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ListModelPackages", actions=["sagemaker:ListModelPackages"], resources=["*"])
        )
        self._acknowledge(shared)

    def _acknowledge(self, shared: SharedResources) -> None:
        prefix = shared.prefix
        policy = self.role.node.find_child("DefaultPolicy")
        bucket_text = token_text(self, shared.bucket, shared.bucket.bucket_arn)
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{bucket_text}/{RUN_OBJECTS_PATTERN}]",
            "Reads a run's manifest under models/<model>/<run_id>/<job>/output/model/; read only.",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{bucket_text}/{MANIFEST_PATTERN}]",
            "Writes only the manifest copy at models/<model>/<run_id>/manifest.json (docs/contracts.md).",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "sagemaker:ListModelPackages has no resource-level permissions; the function lists one group's "
            "packages to find the one this run registered before (idempotent retries).",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package-group/{prefix}-*]",
            "One model package group per model, created on a model's first run; scoped to the stage prefix.",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package/{prefix}-*]",
            "Package versions of this stage's groups (<group>/<version>); scoped to the stage prefix.",
        )
