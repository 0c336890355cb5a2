"""The one way this project makes a Lambda function.

Each function lives in ``lambda/<name>/`` (handler.py thin, logic pure), runs on
python3.14 on x86_64 with the shared dependency layer (built for exactly that by
stacks/lambda_layer.py), in the workload subnets, with X-Ray tracing, a KMS-encrypted log
group and environment, and its own role
(no AWS managed policies: log writes are granted on its own log group only).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.lambda_layer import PYTHON_VERSION, layer_dir
from stacks.log_groups import encrypted_log_group
from stacks.nag import acknowledge
from stacks.shared_resources import SharedResources

LAMBDA_ROOT = Path(__file__).resolve().parents[1] / "lambda"
# Modules more than one function imports (lambda/shared/*.py): copied into every function's
# asset at synth, beside its own files, since a Lambda asset is one folder.
SHARED_ROOT = LAMBDA_ROOT / "shared"
# The project's contracts package (one definition per shared fact), bundled into every asset.
CONTRACTS_ROOT = LAMBDA_ROOT.parent / "contracts"
STAGING_ROOT = LAMBDA_ROOT.parent / "build" / "lambda-assets"
RUNTIME = lambda_.Runtime.PYTHON_3_14
if RUNTIME.name != f"python{PYTHON_VERSION}":  # the layer's wheels are built for one Python
    raise RuntimeError(f"{RUNTIME.name} does not match the layer's Python {PYTHON_VERSION}")


def staged_source(name: str) -> Path:
    """lambda/<name>/ plus the shared modules and the contracts package, as the function's asset folder
    (rebuilt at every synth)."""
    source = LAMBDA_ROOT / name
    if not (source / "handler.py").is_file():
        raise FileNotFoundError(f"{source}/handler.py does not exist")
    staged = STAGING_ROOT / name
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache"))
    for module in sorted(SHARED_ROOT.glob("*.py")):
        if (staged / module.name).exists():
            raise FileExistsError(f"{source} has its own {module.name}, which lambda/shared/ also defines")
        shutil.copy2(module, staged / module.name)
    shutil.copytree(
        CONTRACTS_ROOT,
        staged / CONTRACTS_ROOT.name,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache"),
    )
    return staged


def dependency_layer(scope: Construct, construct_id: str) -> lambda_.LayerVersion:
    """Powertools, X-Ray SDK, pydantic and a pinned boto3 for every function of a stack."""
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(str(layer_dir())),
        compatible_runtimes=[RUNTIME],
        description="aws-lambda-powertools, aws-xray-sdk, pydantic, boto3 (lambda/requirements.txt)",
        compatible_architectures=[lambda_.Architecture.X86_64],
    )


class PythonFunction(Construct):
    """A function from ``lambda/<name>/`` with the project's defaults."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        resource_prefix: str,
        description: str,
        layer: lambda_.ILayerVersion,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        environment: dict[str, str] | None = None,
        timeout_seconds: int = 60,
        memory_size: int = 256,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        source = staged_source(name)
        # Every function is deployed as <prefix>-<its folder's name, dashed>.
        function_name = f"{resource_prefix}-{name.replace('_', '-')}"
        self.log_group = encrypted_log_group(
            self, "Logs", key=key, retention_days=log_retention_days, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: only what this function calls",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(source)),
            layers=[layer],
            role=self.role,
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_size,
            environment={"POWERTOOLS_SERVICE_NAME": name, **(environment or {})},
            environment_encryption=key,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[security_group],
            reserved_concurrent_executions=reserved_concurrency,
        )
        self.log_group.grant_write(self.role)
        # What AWSLambdaVPCAccessExecutionRole would grant, inline: a function in a
        # VPC manages its own network interfaces.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                resources=["*"],
            )
        )
        for rule in ("AwsSolutions-IAM5[Resource::*]",):
            acknowledge(
                self.role,
                rule,
                "A function in a VPC creates and deletes its ENIs (ec2:*NetworkInterface*) and sends "
                "X-Ray segments; neither API supports resource-level permissions.",
            )


def scheduled_function(
    scope: Construct,
    construct_id: str,
    shared: SharedResources,
    *,
    schedule: events.Schedule,
    rule_description: str,
    retry_attempts: int,
    rule_name: str | None = None,
    **function_props: Any,
) -> tuple[PythonFunction, events.Rule]:
    """A function with the stack's shared options and the EventBridge rule (``Schedule``, beside
    it in ``scope``) that invokes it; ``retry_attempts``: how often EventBridge retries a failed invoke."""
    python_function = PythonFunction(scope, construct_id, **function_props, **shared.function_options())
    rule = events.Rule(
        scope,
        "Schedule",
        rule_name=rule_name,
        description=rule_description,
        schedule=schedule,
        targets=[targets.LambdaFunction(python_function.function, retry_attempts=retry_attempts)],
    )
    return python_function, rule
