"""The execution role of the pipeline's SageMaker jobs and models.

One role for the quantize training job, the evaluate processing job and the
candidate model: all three read the run's inputs, write under ``models/``,
pull the images, log, and run in the workload subnets. Nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.nag import acknowledge
from stacks.pipeline_nag import token_text


class SageMakerExecutionRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_prefix: str,
        bucket: s3.IBucket,
        key: kms.IKey,
        allowed_source_buckets: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{resource_prefix} quantize/evaluate jobs and candidate models",
        )
        # Inputs may sit anywhere in the artifact bucket (and the allowed ones);
        # outputs only under models/.
        sources = [
            bucket,
            *(s3.Bucket.from_bucket_name(self, f"Source{i}", n) for i, n in enumerate(allowed_source_buckets)),
        ]
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadInputs",
                actions=["s3:GetObject", "s3:ListBucket"],
                resources=[arn for source in sources for arn in (source.bucket_arn, source.arn_for_objects("*"))],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteOutputs",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects("models/*")],
            )
        )
        # Jobs and endpoints with a KMS volume key hand the key to EC2 by grant.
        key.grant(self.role, "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PullImages",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[stack.format_arn(service="ecr", account="*", resource="repository", resource_name="*")],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="VpcDescribe",
                actions=[
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:CreateNetworkInterface",
                    "ec2:DeleteNetworkInterface",
                ],
                resources=["*"],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="VpcInterfacePermissions",
                actions=["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterfacePermission"],
                resources=[stack.format_arn(service="ec2", resource="network-interface", resource_name="*")],
            )
        )
        policy = self.role.node.find_child("DefaultPolicy")
        bucket_text = token_text(self, bucket, bucket.bucket_arn)
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{bucket_text}/*]",
            "Source models, calibration and validation sets may sit anywhere in the artifact bucket; the run's "
            "spec names them (validated against this bucket). Read only (s3:GetObject).",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{bucket_text}/models/*]",
            "Jobs write a run's artifact and reports under models/<model>/<run_id>/ (docs/contracts.md).",
        )
        for name in allowed_source_buckets:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{name}/*]",
                "An allowed source bucket from the stage config: read-only access to its objects.",
            )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and the EC2 Describe*/network-interface calls SageMaker makes for VPC "
            "jobs support no resource-level permissions.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:*:repository/*]",
            "Images come from AWS's Deep Learning Container accounts (per region, from sagemaker-core's tables) "
            "or from a per-run override; only the three image-pull read actions are allowed.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]",
            "SageMaker jobs and endpoints log to log groups it names under /aws/sagemaker/ per job type.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]",
            "SageMaker creates the network interfaces of a VPC job itself; their ids are unknown in advance.",
        )
