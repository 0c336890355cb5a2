"""A VPC where jobs, endpoints and functions reach AWS only through endpoints."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.log_groups import encrypted_log_group
from stacks.nag import acknowledge

# Who in the VPC calls which AWS API. An interface endpoint costs money every hour
# in every AZ, so one exists only for an API with a caller here. Not callers:
# Lambda itself (credentials, environment decryption, log and trace delivery
# happen outside the function's VPC), Step Functions and EventBridge (not in the
# VPC), and the quantize job and candidate model, which run with network
# isolation: SageMaker moves their S3 data through the VPC (the S3 gateway) and
# pulls ECR images over its platform network, and the containers make no calls.
# The evaluate job is the exception: a client of the canaried endpoint, it runs
# without network isolation and calls the SageMaker runtime (InvokeEndpoint).
# The rollback function's metrics are embedded-metric-format log lines, not
# PutMetricData. S3 is reached through the free gateway endpoint.
CALLERS: dict[str, tuple[str, ...]] = {
    "canary_guard function": ("sagemaker", "cloudwatch", "application-autoscaling", "s3"),
    "record_package function": ("s3", "sagemaker"),
    "rollback function": ("s3", "sagemaker", "sns", "application-autoscaling"),
    "validate_input function": (),
    # Invokes the monitored endpoints' variants and publishes LLMQ/Quality with PutMetricData.
    "quality_sampler function": ("s3", "sagemaker", "sagemaker-runtime", "cloudwatch"),
    # Capture files and manifests (S3), the endpoints and their tags, its own metrics.
    "input_drift function": ("s3", "sagemaker", "cloudwatch"),
    "quantize training job (network isolation)": ("s3",),
    # No network isolation: it invokes both variants of the baseline endpoint (TargetVariant).
    "evaluate processing job (VPC, no network isolation)": ("s3", "sagemaker-runtime"),
    # A model with VpcConfig runs its container in these subnets. No AWS page found rules out the
    # image pull going through the VPC for such a model, so ECR stays reachable: two endpoints cost
    # less than an endpoint update that cannot pull its image.
    "candidate model (VpcConfig, network isolation)": ("s3", "ecr", "ecr-dkr"),
}
GATEWAY_SERVICES = frozenset({"s3"})
# boto3 service name -> (construct id, interface endpoint service).
INTERFACE_SERVICES: dict[str, tuple[str, ec2.InterfaceVpcEndpointAwsService]] = {
    "cloudwatch": ("Monitoring", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING),
    "sagemaker": ("SageMakerApi", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API),
    "sagemaker-runtime": ("SageMakerRuntime", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME),
    "sns": ("Sns", ec2.InterfaceVpcEndpointAwsService.SNS),
    "application-autoscaling": ("ApplicationAutoScaling", ec2.InterfaceVpcEndpointAwsService.APPLICATION_AUTOSCALING),
    "ecr": ("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR),
    "ecr-dkr": ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
}
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = dict(
    INTERFACE_SERVICES[service]
    for service in sorted({s for services in CALLERS.values() for s in services} - GATEWAY_SERVICES)
)


class PrivateNetwork(Construct):
    """VPC, endpoints, flow logs and the one security group for workloads."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cidr: str,
        max_azs: int,
        allow_nat_egress: bool,
        flow_log_key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        if allow_nat_egress:
            subnets = [
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="workloads", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
            ]
        else:
            subnets = [
                ec2.SubnetConfiguration(name="workloads", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20)
            ]
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            max_azs=max_azs,
            # One NAT gateway when egress is allowed: it is for pulling public
            # packages, not for serving traffic, so per-AZ redundancy is not worth it.
            nat_gateways=1 if allow_nat_egress else 0,
            subnet_configuration=subnets,
            enable_dns_hostnames=True,
            enable_dns_support=True,
        )
        self.workload_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS if allow_nat_egress else ec2.SubnetType.PRIVATE_ISOLATED
        )

        flow_log_group = encrypted_log_group(
            self, "FlowLogs", key=flow_log_key, retention_days=log_retention_days, removal_policy=removal_policy
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "WorkloadSecurityGroup",
            vpc=self.vpc,
            description="Quantize/evaluate jobs, SageMaker endpoints, functions and VPC endpoints; admits only itself",
            allow_all_outbound=False,
        )
        acknowledge(
            self.security_group,
            "AwsSolutions-EC23",
            "The only ingress rule's source is this security group itself (a token cdk-nag cannot "
            "resolve, so the rule errors); no CIDR, least of all 0.0.0.0/0, is admitted.",
        )
        # Distributed jobs talk to their peers on any port; everything else
        # only needs HTTPS to the endpoints, which share this group.
        self.security_group.add_ingress_rule(self.security_group, ec2.Port.all_traffic(), "members of this group")
        self.security_group.add_egress_rule(self.security_group, ec2.Port.all_traffic(), "members of this group")
        # S3 is reached through the gateway endpoint, whose prefix list is only
        # known at deploy time; without NAT there is no other route for 443.
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to S3 (gateway endpoint)")

        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.workload_subnets]
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.workload_subnets,
                security_groups=[self.security_group],
                private_dns_enabled=True,
                # open=True would admit the whole VPC CIDR on 443; members of the
                # workload group are the only callers.
                open=False,
            )
