"""The project's customer-managed KMS key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class ProjectKey(Construct):
    """One CMK for artifacts, logs, job volumes and endpoints.

    The key policy holds the account root statement (without it, IAM policies
    could not delegate use of the key and a lost role would orphan the key) and
    the CloudWatch Logs service, limited by encryption context to this
    account's log groups. Every role that uses the key gets it through
    ``grant_*`` on the role, so the roles that need it are exactly the ones
    with grants.
    """

    def __init__(self, scope: Construct, construct_id: str, *, alias: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        this_accounts_log_groups = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="Encrypts quantized model artifacts, job volumes, logs and endpoints",
            enable_key_rotation=True,
            # Deleting a key makes every artifact and log it encrypted unreadable,
            # so the waiting period is the longest allowed.
            pending_window=Duration.days(30),
            # Retained whatever the stage says: weights and reports outlive stacks.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": this_accounts_log_groups}},
            )
        )
