"""What every SageMaker job's execution role needs, whatever the job does.

Both execution roles (stacks/sagemaker_role.py: quantize job and candidate model; stacks/evaluate_role.py:
the evaluate processing job) are assumed by SageMaker, read the run's inputs from the artifact bucket
and the allowed source buckets, log under ``/aws/sagemaker/``, pull images, and let SageMaker attach
network interfaces in the VPC (the EC2 permissions of "CreateProcessingJob API: Execution Role
Permissions", SageMaker developer guide). Their statements and cdk-nag acknowledgements are built here.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from stacks.nag import acknowledge
from stacks.pipeline_nag import token_text

SAGEMAKER_SERVICE = "sagemaker.amazonaws.com"
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
# "If you specify a private VPC for your processing job, add the following permissions."
VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)
VPC_INTERFACE_PERMISSION_ACTIONS = ("ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterfacePermission")


def job_role(scope: Construct, description: str) -> iam.Role:
    """An execution role that only SageMaker may assume (construct id ``Role``)."""
    return iam.Role(scope, "Role", assumed_by=iam.ServicePrincipal(SAGEMAKER_SERVICE), description=description)


def source_buckets(scope: Construct, bucket: s3.IBucket, allowed_source_buckets: Sequence[str]) -> list[s3.IBucket]:
    """The artifact bucket and the allowed source buckets: where a run's inputs may sit."""
    return [
        bucket,
        *(s3.Bucket.from_bucket_name(scope, f"Source{i}", n) for i, n in enumerate(allowed_source_buckets)),
    ]


def add_statement(role: iam.IRole, sid: str, actions: Sequence[str], resources: list[str]) -> None:
    role.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=list(actions), resources=resources))


def grant_job_logs(role: iam.IRole, stack: Stack, log_groups: str) -> None:
    """``JobLogs``: the log actions on ``log_groups`` (a log-group name pattern)."""
    arn = stack.format_arn(
        service="logs", resource="log-group", resource_name=log_groups, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )
    add_statement(role, "JobLogs", LOG_ACTIONS, [arn])


def grant_vpc_interfaces(role: iam.IRole, stack: Stack, *, sid: str) -> None:
    """``sid`` (the EC2 calls SageMaker makes for a VPC job) and ``VpcInterfacePermissions``."""
    add_statement(role, sid, VPC_ACTIONS, ["*"])
    add_statement(
        role,
        "VpcInterfacePermissions",
        VPC_INTERFACE_PERMISSION_ACTIONS,
        [stack.format_arn(service="ec2", resource="network-interface", resource_name="*")],
    )


# Both roles get ecr:GetAuthorizationToken and VPC_ACTIONS on "*" (above).
WILDCARD_REASON = (
    "ecr:GetAuthorizationToken and the EC2 Describe*/network-interface calls SageMaker makes for a VPC job "
    "support no resource-level permissions."
)


def acknowledge_job_grants(
    role: iam.Role,
    bucket: s3.IBucket,
    *,
    allowed_source_buckets: Sequence[str],
    read_reason: str,
    write_pattern: str,
    write_reason: str,
    log_groups: str,
    log_reason: str,
) -> IConstruct:
    """The cdk-nag IAM5 findings every job role has: reads anywhere in the artifact bucket, writes under
    ``write_pattern``, source buckets, ``*``, its log groups, VPC interfaces. Returns the role's policy."""
    policy = role.node.find_child("DefaultPolicy")
    bucket_text = token_text(role, bucket, bucket.bucket_arn)
    acknowledge(policy, f"AwsSolutions-IAM5[Resource::{bucket_text}/*]", read_reason)
    acknowledge(policy, f"AwsSolutions-IAM5[Resource::{bucket_text}/{write_pattern}]", write_reason)
    for name in allowed_source_buckets:
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{name}/*]",
            "An allowed source bucket from the stage config: read-only access to its objects.",
        )
    acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", WILDCARD_REASON)
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{log_groups}]",
        log_reason,
    )
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]",
        "SageMaker creates the network interfaces of a VPC job itself; their ids are unknown in advance.",
    )
    return policy
