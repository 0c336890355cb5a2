"""The canary guard function (lambda/canary_guard/): judge of the endpoint and the candidate's alarms.

It judges whether a canary may start or go on and whether an endpoint update landed, and
lifts and restores the serving variant's autoscaling around a promotion. Least privilege:
it reads the monitored endpoints (by exact name; with none configured, the stage prefix)
and any endpoint config, reads the candidate alarms of those endpoints, and manages only
those endpoints' variant autoscaling (stacks/variant_autoscaling_grants.py), keeping a
run's lifted setup in its autoscaling record in the bucket.

A ``PythonFunction`` itself rather than a construct holding one: the stack creates it
with the id it always had (``CanaryGuard``), so the function, role, policy and log group
keep their construct paths, hence their logical ids.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts import artifact_layout
from stacks.nag import acknowledge
from stacks.pipeline_nag import token_text
from stacks.python_function import PythonFunction
from stacks.shared_resources import SharedResources
from stacks.variant_autoscaling_grants import grant_variant_autoscaling


class CanaryGuardFunction(PythonFunction):
    def __init__(self, scope: Construct, construct_id: str, shared: SharedResources) -> None:
        prefix = shared.prefix
        endpoints = list(shared.config.monitored_endpoints)
        super().__init__(
            scope,
            construct_id,
            name="canary_guard",
            description=(
                "Judges whether a canary may start, go on, whether an endpoint update landed; "
                "lifts and restores autoscaling around promotion"
            ),
            **shared.function_options(),
        )
        stack = Stack.of(self)
        names = endpoints or [f"{prefix}-*"]
        endpoint_arns = [stack.format_arn(service="sagemaker", resource="endpoint", resource_name=n) for n in names]
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadEndpoints",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags"],
                resources=endpoint_arns,
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadEndpointConfigs",
                actions=["sagemaker:DescribeEndpointConfig"],
                resources=[stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*")],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadCandidateAlarms",
                actions=["cloudwatch:DescribeAlarmHistory", "cloudwatch:DescribeAlarms"],
                resources=[
                    stack.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name=f"{name}-candidate-*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for name in names
                ],
            )
        )
        # Promotion onto another instance type lifts and restores the serving variant's autoscaling,
        # keeping the lifted setup in the run's autoscaling record meanwhile.
        grant_variant_autoscaling(self.role, endpoint_arns)
        bucket = shared.bucket
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LiftedAutoscalingRecords",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[bucket.arn_for_objects(artifact_layout.AUTOSCALING_RECORDS_PATTERN)],
            )
        )
        shared.key.grant(self.role, "kms:GenerateDataKey", "kms:Decrypt")
        policy = self.role.node.find_child("DefaultPolicy")
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{token_text(stack, bucket, bucket.bucket_arn)}/"
            f"{artifact_layout.AUTOSCALING_RECORDS_PATTERN}]",
            "The lifted-autoscaling record of a run (models/<model>/<run_id>/autoscaling/), unknown at deploy time.",
        )
        for name in names:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{name}-candidate-*]",
                "The candidate variant's alarms of a monitored endpoint (<endpoint>-candidate-<signal>); read only.",
            )
        if not endpoints:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint/{prefix}-*]",
                "No monitored endpoint configured: endpoints of the stage prefix.",
            )
