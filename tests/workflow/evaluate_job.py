"""The evaluate processing job as the harness runs it, and SageMaker Runtime as documented (test code only).

The job (jobs/evaluate/) is a client of the endpoint the candidate serves on. What the pipeline
depends on, each call made as the job's own role (tests/aws_conformance checks it):

- SageMaker downloads every processing input with the job's role: ListObjectsV2 under the input's
  S3Uri (an S3Prefix), GetObject of each key found; an input with no object fails the job;
- the job invokes the two variants its arguments name (``--baseline-endpoint``/``--baseline-variant``,
  ``--candidate-endpoint``/``--candidate-variant``) with InvokeEndpoint and TargetVariant;
- it writes report.json and gate.json (by jobs/evaluate/gate.py's own code) to the reports output,
  which SageMaker uploads with the role.

A refused call or a missing input fails the job with the container's message (ExitMessage), as the
job's failure file would. moto's SageMaker Runtime answers any endpoint name with canned data; here
InvokeEndpoint needs an existing endpoint, and TargetVariant must name one of its variants and routes
the request there whatever the variant's weight (docs/aws-behaviour.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.exceptions import ClientError
from moto.core.exceptions import JsonRESTError
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from contracts.artifact_layout import GATE_FILE, REPORT_FILE, REVIEW_FILE
from jobs.evaluate.fidelity import DEFAULT_PROMPTS
from jobs.evaluate.gate import gate_json, pipeline_gate
from jobs.evaluate.review import build_review
from tests.aws_conformance.hook import acting_as
from tests.aws_conformance.iam import PolicyEvaluator

ACCOUNT = "123456789012"
REGION = "us-east-1"
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"
# (endpoint argument, variant argument) pairs the job invokes.
INVOKED = (("--baseline-endpoint", "--baseline-variant"), ("--candidate-endpoint", "--candidate-variant"))


@dataclass(frozen=True)
class Invocation:
    endpoint: str
    target_variant: str | None
    served_by: str
    weight: float


def install_runtime(monkeypatch: Any, record: list[Invocation]) -> None:
    """InvokeEndpoint as SageMaker Runtime documents it, on moto's sagemaker backend's endpoints."""

    def invoke_endpoint(response: Any) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        # POST /endpoints/<EndpointName>/invocations
        name = unquote(response.path.split("/")[2])
        target = response.headers.get(TARGET_VARIANT_HEADER)
        endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints.get(name)
        if endpoint is None:
            raise JsonRESTError("ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        variants = {v["VariantName"]: v for v in endpoint.production_variants}
        if target is not None and target not in variants:
            raise JsonRESTError(
                "ValidationError", f"Variant {target} not found on endpoint {name}; it has {sorted(variants)}."
            )
        # TargetVariant overrides the weights; without it the weights decide (the heaviest, here).
        served = target or max(variants, key=lambda v: float(variants[v].get("CurrentWeight", 0)))
        weight = float(variants[served].get("CurrentWeight", 0))
        record.append(Invocation(endpoint=name, target_variant=target, served_by=served, weight=weight))
        body = json.dumps([{"generated_text": "The capital of France is Paris."}])
        return 200, {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": served}, body

    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


def _arguments(kwargs: dict[str, Any]) -> dict[str, str]:
    args = kwargs["app_specification"].get("ContainerArguments", [])
    return dict(zip(args[::2], args[1::2], strict=False))


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class EvaluateJob:
    """One run of the emulated job: ``run`` returns None when it completed, else its failure message."""

    role: PolicyEvaluator
    gate: dict[str, Any]
    report_padding_bytes: int = 0
    # Called once the job has invoked both variants (its load test): e.g. an alarm that fires.
    during_load: Callable[[], None] | None = None

    def run(self, kwargs: dict[str, Any]) -> str | None:
        try:
            with acting_as(self.role):
                missing = self._download(kwargs["processing_inputs"])
                if missing:
                    return missing
                self._invoke(_arguments(kwargs))
            if self.during_load:
                self.during_load()
            with acting_as(self.role):
                self._upload(kwargs["processing_output_config"]["Outputs"][0]["S3Output"]["S3Uri"])
        except ClientError as exc:
            error = exc.response["Error"]
            return f"ClientError: {error.get('Code')}: {error.get('Message')}"
        return None

    @staticmethod
    def _download(inputs: list[dict[str, Any]]) -> str | None:
        s3 = boto3.client("s3", region_name=REGION)
        for item in inputs:
            source = item["S3Input"]
            if not source["LocalPath"].startswith("/opt/ml/processing/"):
                return f"input {item['InputName']}: LocalPath {source['LocalPath']} is not under /opt/ml/processing/"
            bucket, prefix = _split(source["S3Uri"])
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
            if not keys:
                return f"input {item['InputName']}: no S3 objects found under {source['S3Uri']}"
            for key in keys:
                s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return None

    @staticmethod
    def _invoke(args: dict[str, str]) -> None:
        runtime = boto3.client("sagemaker-runtime", region_name=args.get("--region", REGION))
        body = json.dumps({"inputs": "The capital of France is", "parameters": {"max_new_tokens": 8}})
        for endpoint_flag, variant_flag in INVOKED:
            runtime.invoke_endpoint(
                EndpointName=args[endpoint_flag],
                TargetVariant=args[variant_flag],
                ContentType="application/json",
                Body=body,
            )["Body"].read()

    def _upload(self, reports_uri: str) -> None:
        bucket, prefix = _split(reports_uri.rstrip("/"))
        report = {
            "fidelity": {"baseline_perplexity": 12.0, "candidate_perplexity": 12.3, "increase_pct": 2.5},
            "gate": self.gate,
            "samples": "x" * self.report_padding_bytes,
        }
        s3 = boto3.client("s3", region_name=REGION)
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{REPORT_FILE}", Body=json.dumps(report).encode())
        # What the evaluate job writes beside it (jobs/evaluate/gate.py), by the job's own code.
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{GATE_FILE}", Body=gate_json(pipeline_gate(self.gate)))
        # The human review sample (the quality sampler's prompts), by the job's own code.
        outputs = {
            variant: ["The capital of France is Paris."] * len(DEFAULT_PROMPTS) for variant in ("baseline", "candidate")
        }
        review = build_review({"baseline": "BF16", "candidate": "W4A16"}, DEFAULT_PROMPTS, outputs, method="served")
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{REVIEW_FILE}", Body=json.dumps(review).encode())
