"""cdk-nag acknowledgments of the pipeline stack, and how cdk-nag names a token in a finding id.

cdk-nag v3 matches acknowledgments on the full finding id, e.g.
``AwsSolutions-IAM5[Resource::<stack>:ExportsOutput...Arn1A2B3C4D/models/*]``. A
reference to another stack's bucket appears there as CDK's export name, which CDK
derives from the producer's logical id (refs.ts ``generateExportName`` and
``makeUniqueId``: the alphanumeric parts plus the first 8 hex digits of an MD5).
Computing it keeps each acknowledgment on one exact resource string instead of
a blanket suppression. If CDK changes that scheme, synth fails loudly on the
unacknowledged finding (tests/infra).

``acknowledge_state_machine_policy`` holds the state machine role's acknowledgments
(the functions' own are in their construct modules).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from contracts.artifact_layout import REPORTS_PATTERN
from stacks.nag import acknowledge


def _unique_id(components: list[str]) -> str:
    digest = hashlib.md5("/".join(components).encode(), usedforsecurity=False).hexdigest()[:8].upper()
    return "".join(re.sub(r"[^A-Za-z0-9]", "", part) for part in components) + digest


def token_text(consumer: IConstruct, producer: IConstruct, token: str) -> str:
    """The text cdk-nag prints for ``token`` (an attribute of ``producer``) inside ``consumer``'s stack."""
    producer_stack = Stack.of(producer)
    resolved = producer_stack.resolve(token)
    if Stack.of(consumer) is producer_stack:
        if "Ref" in resolved:
            return f"<{resolved['Ref']}>"
        logical_id, attribute = resolved["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    export_id = "Output" + json.dumps(resolved, separators=(",", ":"))
    return f"{producer_stack.stack_name}:{_unique_id(['Exports', export_id])}"


def acknowledge_state_machine_policy(
    policy: IConstruct,
    *,
    prefix: str,
    endpoints: list[str],
    bucket: s3.IBucket,
    functions: Sequence[lambda_.IFunction],
) -> None:
    """The state machine role's remaining wildcards, each by its exact finding id and reason."""
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray tracing and CloudWatch Logs delivery of a state machine (xray:Put*, logs:*LogDelivery*) "
        "support no resource-level permissions; CDK adds exactly those.",
    )
    for function in functions:
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{token_text(policy, function, function.function_arn)}:*]",
            "lambda:InvokeFunction on this function and its versions/aliases (CDK's LambdaInvoke grant).",
        )
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[Resource::{token_text(policy, bucket, bucket.bucket_arn)}/{REPORTS_PATTERN}]",
        "Reads report.json of a run (models/<model>/<run_id>/reports/) for the gate; read only.",
    )
    sagemaker = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
    scoped = {
        f"{sagemaker}:training-job/{prefix}-*": "quantize training jobs (<prefix>-<model>-<run>-q)",
        f"{sagemaker}:processing-job/{prefix}-*": "evaluate processing jobs (<prefix>-<model>-<run>-e)",
        f"{sagemaker}:model/{prefix}-*": "candidate models of this stage (<prefix>-<model>-<run>-candidate)",
        f"{sagemaker}:endpoint-config/{prefix}-*": "canary and promoted endpoint configs of this stage",
        f"{sagemaker}:model-package/{prefix}-*": "package versions in this stage's groups (approve/reject)",
        f"{sagemaker}:endpoint-config/*": (
            "the baseline endpoint's current config is read (and restored on rollback) whatever its name; "
            "the platform team names an endpoint's first config"
        ),
    }
    if not endpoints:
        scoped[f"{sagemaker}:endpoint/{prefix}-*"] = "no monitored endpoint configured: the stage prefix"
    for resource, reason in scoped.items():
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{resource}]", f"Scoped by name: {reason}.")
