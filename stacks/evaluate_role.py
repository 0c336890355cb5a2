"""The evaluate processing job's own role: a client of the canaried endpoint, and nothing more.

The evaluate job runs while the candidate serves on the baseline endpoint at weight 0; it invokes
both variants (``InvokeEndpoint`` with ``TargetVariant``) from the workload subnets, without network
isolation. Its role may:

- ``sagemaker:InvokeEndpoint`` and ``sagemaker:InvokeEndpointWithResponseStream`` on the endpoints
  this deployment may canary (``StageConfig.monitored_endpoints``, as the rollback function and the
  validate function know them; with none configured, the stage prefix), ARNs lower-cased as
  SageMaker writes them;
- read its inputs (``s3:GetObject``, ``s3:ListBucket``: the models' config.json, the manifest and the
  validation set, anywhere in the artifact bucket or an allowed source bucket, as a run's spec names
  them) and write only its reports (``models/*/reports/*``, contracts/artifact_layout.py);
- use the project key: read SSE-KMS inputs, write encrypted reports, grant the volume key to EC2;
- log to ``/aws/sagemaker/ProcessingJobs``, pull the evaluate image, and let SageMaker attach its
  network interfaces in the VPC (the EC2 permissions of "CreateProcessingJob API: Execution Role
  Permissions", SageMaker developer guide).

Nothing else: no other SageMaker action, no CloudWatch metrics (the job publishes none), no write
outside the reports. Sources: docs/aws-behaviour.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from contracts.artifact_layout import REPORTS_PATTERN
from stacks import job_role_grants as grants
from stacks.nag import acknowledge

INVOKE_ACTIONS = ("sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream")
# The log group SageMaker names for processing jobs, and its streams (":*").
LOG_GROUPS = "/aws/sagemaker/ProcessingJobs:*"
# SSE-KMS inputs (Decrypt), the encrypted report upload (Encrypt, GenerateDataKey: S3 asks KMS for a
# data key), the volume key handed to EC2 (CreateGrant).
KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:CreateGrant")


def endpoint_arns(stack: Stack, endpoints: Sequence[str], prefix: str) -> list[str]:
    """The endpoints a run may canary, as IAM matches them (SageMaker lower-cases names in ARNs)."""
    names = [name.lower() for name in endpoints] or [f"{prefix.lower()}-*"]
    return [stack.format_arn(service="sagemaker", resource="endpoint", resource_name=name) for name in names]


class EvaluateJobRole(Construct):
    """``role``: the evaluate processing job's execution role (passed to SageMaker only)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_prefix: str,
        endpoints: Sequence[str],
        bucket: s3.IBucket,
        key: kms.IKey,
        image_repositories: Sequence[str],
        allowed_source_buckets: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = grants.job_role(
            self, f"{resource_prefix} evaluate processing job: invokes the canaried endpoint's variants"
        )
        self.endpoint_arns = endpoint_arns(stack, endpoints, resource_prefix)
        self._add("InvokeCanariedEndpoints", INVOKE_ACTIONS, self.endpoint_arns)
        sources = grants.source_buckets(self, bucket, allowed_source_buckets)
        self._add("ListInputBuckets", ("s3:ListBucket",), [source.bucket_arn for source in sources])
        self._add("ReadInputs", ("s3:GetObject",), [source.arn_for_objects("*") for source in sources])
        self._add(
            "WriteReports", ("s3:PutObject", "s3:AbortMultipartUpload"), [bucket.arn_for_objects(REPORTS_PATTERN)]
        )
        key.grant(self.role, *KEY_ACTIONS)
        grants.grant_job_logs(self.role, stack, LOG_GROUPS)
        # GetAuthorizationToken supports no resource type (Service Authorization Reference).
        self._add("EcrToken", ("ecr:GetAuthorizationToken",), ["*"])
        self._add("PullImage", grants.PULL_ACTIONS, list(image_repositories))
        grants.grant_vpc_interfaces(self.role, stack, sid="VpcNetworkInterfaces")
        self._acknowledge(bucket, resource_prefix, endpoints, allowed_source_buckets)

    def _add(self, sid: str, actions: Sequence[str], resources: list[str]) -> None:
        grants.add_statement(self.role, sid, actions, resources)

    def _acknowledge(
        self, bucket: s3.IBucket, prefix: str, endpoints: Sequence[str], allowed_source_buckets: Sequence[str]
    ) -> None:
        policy = grants.acknowledge_job_grants(
            self.role,
            bucket,
            allowed_source_buckets=allowed_source_buckets,
            read_reason="The source model's config.json and the validation set may sit anywhere in the artifact "
            "bucket (the run's spec names them, validated against this bucket). Read only (s3:GetObject).",
            write_pattern=REPORTS_PATTERN,
            write_reason="The job writes only its run's reports (models/<model>/<run_id>/reports/, docs/contracts.md).",
            log_groups=LOG_GROUPS,
            log_reason="The processing job's log streams (one per job instance) in the log group SageMaker names "
            "for them.",
        )
        if not endpoints:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"endpoint/{prefix.lower()}-*]",
                "No monitored endpoint configured: the stage prefix admits only this stage's endpoints.",
            )
