"""What a function needs to lift and restore a serving variant's autoscaling (lambda/shared/endpoint_autoscaling.py).

Application Auto Scaling's writes authorize on the scalable-target ARN, whose id is
service-generated (not ``endpoint/<e>/variant/<v>``) and new after a deregister, so they
are scoped by the service-namespace and scalable-dimension condition keys instead; its
Describe* calls have no resource type. Before registering a target or putting a policy it
also checks that the *caller* may use the target service and CloudWatch (SageMaker's
list: DescribeEndpoint, DescribeEndpointConfig, UpdateEndpointWeightsAndCapacities;
PutMetricAlarm, DescribeAlarms, DeleteAlarms for target tracking's own alarms, named
``TargetTracking-*``).
https://docs.aws.amazon.com/service-authorization/latest/reference/list_applicationautoscaling.html,
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
TARGET_TRACKING_ALARMS = "TargetTracking-*"


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
    add(
        iam.PolicyStatement(
            sid="TargetTrackingAlarms",
            actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
            resources=[
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=TARGET_TRACKING_ALARMS,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
    )
    policy = role.node.find_child("DefaultPolicy")
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "application-autoscaling Describe* support no resource-level permissions; read only.",
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
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{TARGET_TRACKING_ALARMS}]",
        "Target tracking policies create and delete their own alarms, named TargetTracking-<target>-...; "
        "Application Auto Scaling checks the caller may.",
    )
