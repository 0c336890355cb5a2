"""The execution role of the pipeline's SageMaker jobs and models.

One role for the quantize training job and the candidate model: both read the
run's inputs, write under ``models/``, pull the images, log, and run in the
workload subnets. Nothing else. (The evaluate job has its own: stacks/evaluate_role.py.)

Image pulls are limited to the repositories this stack's images come from,
found in the stack at synth: every CDK image asset (its bootstrap
container-assets repository) and every ``PipelineImages`` construct (the AWS
Deep Learning Containers repositories its resolved URIs name, literal or from
its per-region CfnMapping). No account id is typed here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from aws_cdk import Aspects, Aws, Fn, IAspect, Stack, Token
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct
from jsii import implements as jsii_implements

from stacks import job_role_grants as grants
from stacks.sagemaker_images import PipelineImages

# Jobs write a run's artifact and reports under models/ (contracts/artifact_layout.py); SageMaker names
# the log groups of jobs and endpoints under /aws/sagemaker/.
OUTPUT_PATTERN = "models/*"
LOG_GROUPS = "/aws/sagemaker/*"
_ECR_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)(?:[:@].*)?$")


def repository_arn_of_image(uri: str) -> str:
    """The ECR repository ARN of an image URI (``<account>.dkr.ecr.<region>.<suffix>/<repo>[:tag|@digest]``).

    A literal URI is parsed here; a token (a Fn::FindInMap of the per-region image
    table) is taken apart with Fn::Split at deploy time, the same way.
    """
    if not Token.is_unresolved(uri):
        match = _ECR_URI.match(uri)
        if match is None:
            raise ValueError(f"{uri!r} is not an ECR image URI")
        account, region, repository = match.groups()
        return f"arn:{Aws.PARTITION}:ecr:{region}:{account}:repository/{repository}"
    host, path = Fn.select(0, Fn.split("/", uri)), Fn.select(1, Fn.split("/", uri))
    return Fn.join(
        "",
        [
            f"arn:{Aws.PARTITION}:ecr:",
            Fn.select(3, Fn.split(".", host)),
            ":",
            Fn.select(0, Fn.split(".", host)),
            ":repository/",
            Fn.select(0, Fn.split(":", path)),
        ],
    )


def pulled_repository_arns(stack: Stack) -> list[str]:
    """Repositories of every image in ``stack``: CDK image assets and the resolved SageMaker images."""
    arns: dict[str, str] = {}
    for construct in stack.node.find_all():
        if isinstance(construct, ecr_assets.DockerImageAsset):
            arn = construct.repository.repository_arn
            arns[json.dumps(stack.resolve(arn), sort_keys=True)] = arn
        elif isinstance(construct, PipelineImages):
            for uri in (construct.uris.training, construct.uris.serving):
                arn = repository_arn_of_image(uri)
                arns[json.dumps(stack.resolve(arn), sort_keys=True)] = arn
    return list(arns.values())


def grant_pass_to_sagemaker(role: iam.IRole, grantee: iam.IGrantable) -> iam.Grant:
    """iam:PassRole on ``role`` for ``grantee``, only when the role is passed to SageMaker."""
    return iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["iam:PassRole"],
        resource_arns=[role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": grants.SAGEMAKER_SERVICE}},
    )


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
        self.role = grants.job_role(self, f"{resource_prefix} quantize jobs and candidate models")
        # Inputs may sit anywhere in the artifact bucket (and the allowed ones);
        # outputs only under models/.
        sources = grants.source_buckets(self, bucket, allowed_source_buckets)
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
                resources=[bucket.arn_for_objects(OUTPUT_PATTERN)],
            )
        )
        # Jobs and endpoints with a KMS volume key hand the key to EC2 by grant.
        key.grant(self.role, "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey")
        # Added at synth (an aspect runs once every image construct of the stack exists).
        Aspects.of(self).add(_AllowImagePulls(self))
        # GetAuthorizationToken supports no resource type (Service Authorization Reference).
        grants.add_statement(self.role, "EcrToken", ("ecr:GetAuthorizationToken",), ["*"])
        grants.grant_job_logs(self.role, stack, LOG_GROUPS)
        grants.grant_vpc_interfaces(self.role, stack, sid="VpcDescribe")
        grants.acknowledge_job_grants(
            self.role,
            bucket,
            allowed_source_buckets=allowed_source_buckets,
            read_reason="Source models, calibration and validation sets may sit anywhere in the artifact bucket; the "
            "run's spec names them (validated against this bucket). Read only (s3:GetObject).",
            write_pattern=OUTPUT_PATTERN,
            write_reason="Jobs write a run's artifact and reports under models/<model>/<run_id>/ (docs/contracts.md).",
            log_groups=LOG_GROUPS,
            log_reason="SageMaker jobs and endpoints log to log groups it names under /aws/sagemaker/ per job type.",
        )


@jsii_implements(IAspect)
class _AllowImagePulls:
    """Adds the PullImages statement once, for the repositories found in the role's stack."""

    def __init__(self, owner: SageMakerExecutionRole) -> None:
        self._owner = owner
        self._done = False

    def visit(self, node: IConstruct) -> None:
        if self._done or node is not self._owner:
            return
        self._done = True
        arns = pulled_repository_arns(Stack.of(self._owner))
        if not arns:
            raise ValueError(
                "SageMakerExecutionRole: no image asset or PipelineImages construct in its stack, so there is "
                "no repository to allow image pulls from"
            )
        self._owner.role.add_to_principal_policy(
            iam.PolicyStatement(sid="PullImages", actions=list(grants.PULL_ACTIONS), resources=arns)
        )
