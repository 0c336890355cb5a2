"""What a function needs to lift and restore a serving variant's autoscaling (lambda/shared/endpoint_autoscaling.py).

Application Auto Scaling's writes authorize on the scalable-target ARN, whose id is
service-generated (not ``endpoint/<e>/variant/<v>``) and new after a deregister, so they
are scoped by the service-namespace and scalable-dimension condition keys instead; its
Describe* calls have no resource type. Before registering a target or putting a policy it
also checks that the *caller* may use the target service and CloudWatch (SageMaker's
list: DescribeEndpoint, DescribeEndpointConfig, UpdateEndpointWeightsAndCapacities;
PutMetricAlarm, DescribeAlarms, DeleteAlarms, probed without alarm names, hence on ``*``).
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsapplicationautoscaling.html,
https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_permission_validation.html,
https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam

from stacks.nag import acknowledge

WRITES = (
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:PutScheduledAction",
)
READS = (
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScheduledActions",
)


def grant_variant_autoscaling(role: iam.IRole, endpoint_arns: Sequence[str]) -> None:
    stack = Stack.of(role)
    add = role.add_to_principal_policy
    add(iam.PolicyStatement(sid="ReadScalableTargets", actions=list(READS), resources=["*"]))
    add(
        iam.PolicyStatement(
            sid="LiftAndRestoreVariantScaling",
            actions=list(WRITES),
            resources=[
                stack.format_arn(
                    service="application-autoscaling",
                    resource="scalable-target",
                    resource_name="*",
                    arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                )
            ],
            conditions={
                "StringEquals": {
                    "application-autoscaling:service-namespace": "sagemaker",
                    "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
                }
            },
        )
    )
    # What Application Auto Scaling checks the caller for before it registers a SageMaker target.
    add(
        iam.PolicyStatement(
            sid="ScalingValidatesEndpointAccess",
            actions=["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"],
            resources=list(endpoint_arns),
        )
    )
    add(
        iam.PolicyStatement(
            sid="ScalingValidatesEndpointConfigAccess",
            actions=["sagemaker:DescribeEndpointConfig"],
            resources=[stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*")],
        )
    )
    # Application Auto Scaling probes these CloudWatch calls without alarm names (DescribeAlarms with
    # only MaxRecords, PutMetricAlarm and DeleteAlarms without parameters), so a grant on
    # alarm:TargetTracking-* would not satisfy the check; AWS's SageMaker example grants them on *.
    add(
        iam.PolicyStatement(
            sid="ScalingValidatesCloudWatchAccess",
            actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
            resources=["*"],
        )
    )
    policy = role.node.find_child("DefaultPolicy")
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "application-autoscaling Describe* support no resource-level permissions (read only); Application Auto "
        "Scaling checks the caller's cloudwatch PutMetricAlarm/DescribeAlarms/DeleteAlarms with nameless probes.",
    )
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:application-autoscaling:<AWS::Region>:<AWS::AccountId>:scalable-target/*]",
        "Scalable-target ids are service-generated and change on re-registration; scoped to SageMaker variant "
        "instance counts by the service-namespace and scalable-dimension condition keys.",
    )
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint-config/*]",
        "Application Auto Scaling validates DescribeEndpointConfig on the config the endpoint runs, which the "
        "platform team names; read only.",
    )
