"""Network: the private VPC, its endpoints, flow logs and the workload security group."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import StageConfig
from stacks.private_network import PrivateNetwork


class NetworkStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        network = PrivateNetwork(
            self,
            "Network",
            cidr=config.vpc_cidr,
            max_azs=config.max_azs,
            allow_nat_egress=config.allow_nat_egress,
            flow_log_key=key,
            log_retention_days=config.log_retention_days,
            removal_policy=removal_policy(config),
        )
        self.vpc = network.vpc
        self.workload_subnets = network.workload_subnets
        self.security_group = network.security_group


def removal_policy(config: StageConfig) -> RemovalPolicy:
    """Removal policy for replaceable resources (logs, functions); data stores always retain."""
    return RemovalPolicy.DESTROY if config.removal_policy == "destroy" else RemovalPolicy.RETAIN
