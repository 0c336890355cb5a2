"""The one object that carries a stage's shared resources to stacks and constructs.

Storage and network make the key, the artifact bucket, the VPC, the workload subnets and
security group; every later stack and construct needs most of them. They travel together
as ``SharedResources`` instead of a parameter list repeated at every level. A stack that
makes its own dependency layer adds it with ``with_layer``; ``function_options`` then gives
exactly what ``PythonFunction`` needs beside the function's own name, description and
environment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from stacks.config import StageConfig
from stacks.network_stack import removal_policy


@dataclass(frozen=True)
class SharedResources:
    """A stage's configuration and the L2 objects its stacks share (never ARN strings)."""

    config: StageConfig
    bucket: s3.IBucket
    key: kms.IKey
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup
    layer: lambda_.ILayerVersion | None = None

    @property
    def prefix(self) -> str:
        return self.config.resource_prefix

    @property
    def removal_policy(self) -> RemovalPolicy:
        """For replaceable resources (log groups, functions); the key and buckets are always retained."""
        return removal_policy(self.config)

    def subnet_list(self) -> list[ec2.ISubnet]:
        """The workload subnets themselves (a state machine's job and model VpcConfig names their ids)."""
        return self.vpc.select_subnets(subnet_type=self.subnets.subnet_type).subnets

    def with_layer(self, layer: lambda_.ILayerVersion) -> SharedResources:
        """The same resources plus the functions' dependency layer of one stack."""
        return replace(self, layer=layer)

    def function_options(self) -> dict[str, Any]:
        """``PythonFunction`` keyword arguments every function of a stack shares."""
        if self.layer is None:
            raise ValueError("no dependency layer: call with_layer(dependency_layer(stack, ...)) first")
        return {
            "resource_prefix": self.prefix,
            "layer": self.layer,
            "key": self.key,
            "vpc": self.vpc,
            "subnets": self.subnets,
            "security_group": self.security_group,
            "log_retention_days": self.config.log_retention_days,
            "removal_policy": self.removal_policy,
        }
