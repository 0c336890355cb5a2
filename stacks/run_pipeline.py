"""Start a pipeline execution from a model spec, follow it state by state, print the outcome.

    python -m stacks.run_pipeline docs/examples/gptq-w4a16.yaml --stage dev
    python -m stacks.run_pipeline docs/examples/gptq-w4a16.yaml --stage dev --offline   # no AWS needed

The spec is validated locally first with the same model the validate Lambda uses
(lambda/validate_input/run_spec.py, imported by path), so a bad spec fails here,
with every problem listed, before anything starts. The execution is named after
the run id: starting the same spec twice attaches to the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[1]
RUN_SPEC = ROOT / "lambda" / "validate_input" / "run_spec.py"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def load_run_spec_module() -> ModuleType:
    # run_spec imports its sibling quantize_sizing, as it does inside the function.
    if str(RUN_SPEC.parent) not in sys.path:
        sys.path.insert(0, str(RUN_SPEC.parent))
    spec = importlib.util.spec_from_file_location("run_spec", RUN_SPEC)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {RUN_SPEC}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_spec"] = module
    spec.loader.exec_module(module)
    return module


PLACEHOLDER_BUCKET = "ARTIFACT_BUCKET"


def read_spec(path: Path, bucket: str | None = None) -> Any:
    """The spec as data; ``bucket`` replaces the examples' ARTIFACT_BUCKET placeholder."""
    text = path.read_text()
    if bucket:
        text = text.replace(PLACEHOLDER_BUCKET, bucket)
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def local_defaults(run_spec: ModuleType, function: dict[str, Any], region: str) -> Any:
    """The validate function's own environment, so local and remote judge alike.

    Lambda sets AWS_REGION itself (it is not in the function's configuration): the function's region.
    """
    return run_spec.Defaults.from_environment({**function["Environment"]["Variables"], "AWS_REGION": region})


def offline_defaults(run_spec: ModuleType, stage: str, region: str | None, bucket: str) -> Any:
    """Defaults from cdk.json's stage config, as the deployed function would get them.

    For checking a spec before anything is deployed (or without credentials); the
    artifact bucket's real name is only known after deploy, so it is a parameter
    (the examples use the placeholder ARTIFACT_BUCKET).
    """
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from contracts.alarm_signals import ROLLBACK_SIGNALS  # noqa: PLC0415
    from stacks.config import load_stage_config  # noqa: PLC0415 - only this path needs the CDK config
    from stacks.sagemaker_images import SERVING, TRAINING, resolve  # noqa: PLC0415

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    config = load_stage_config(context, stage)
    region = region or config.region or "us-east-1"
    images = resolve(config.pipeline.images, region, training_instance_type=config.instances.quantize)
    return run_spec.Defaults(
        resource_prefix=config.resource_prefix,
        artifact_bucket=bucket,
        allowed_buckets=config.pipeline.allowed_source_buckets,
        monitored_endpoints=config.monitored_endpoints,
        quantize_instance_type=config.instances.quantize,
        evaluate_instance_type=config.instances.evaluate,
        serving_instance_type=config.instances.serving,
        quantize_image_uri=images[TRAINING],
        evaluate_image_uri=images[TRAINING],
        serving_image_uri=images[SERVING],
        # The key's ARN exists only after deploy; offline checks only need its shape.
        kms_key_arn=f"arn:aws:kms:{region}:{'0' * 12}:key/offline-check",
        serving_variant=config.serving_variant,
        min_bake_minutes=config.monitoring.min_bake_minutes,
        rollback_signals=ROLLBACK_SIGNALS,
        require_human_review=config.pipeline.require_human_review,
        region=region,
    )


def console_links(region: str, plan: dict[str, Any], execution_arn: str) -> dict[str, str]:
    console = f"https://{region}.console.aws.amazon.com"
    bucket = plan["s3"]["bucket"]
    prefix = plan["s3"]["run_prefix"].removeprefix(f"s3://{bucket}/")
    return {
        "execution": f"{console}/states/home?region={region}#/v2/executions/details/{execution_arn}",
        "artifacts": f"{console}/s3/buckets/{bucket}?prefix={prefix}",
        "report": f"s3://{bucket}/{plan['s3']['report_key']}",
        "manifest": f"s3://{bucket}/{plan['s3']['manifest_key']}",
        "training job": f"{console}/sagemaker/home?region={region}#/jobs/{plan['names']['training_job']}",
        "endpoint": f"{console}/sagemaker/home?region={region}#/endpoints/{plan['baseline_endpoint']}",
    }


def follow(sfn: Any, execution_arn: str, poll_seconds: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Print each state as it is entered; return describe_execution once the run ends."""
    seen: set[str] = set()
    while True:
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            for event in page["events"]:
                entered = event.get("stateEnteredEventDetails")
                if entered and str(event["id"]) not in seen:
                    seen.add(str(event["id"]))
                    print(f"  {event['timestamp']:%H:%M:%S}  {entered['name']}", file=out)
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL:
            return described
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="model spec (YAML or JSON), see docs/pipeline.md")
    parser.add_argument("--stage", default="dev", help="stage whose pipeline runs it (default: dev)")
    parser.add_argument("--project", default="llmq")
    parser.add_argument("--region", default=None)
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    parser.add_argument("--validate-only", action="store_true", help="check the spec locally and stop")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="validate against cdk.json's stage config instead of the deployed function (implies --validate-only)",
    )
    parser.add_argument(
        "--bucket",
        help="artifact bucket name: replaces ARTIFACT_BUCKET in the spec (default with --offline: llmq-artifacts)",
    )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (BotoCoreError, ClientError) as exc:
        # No region, no credentials, no such function: one line, not a traceback.
        print(f"AWS error: {exc} (use --offline to validate the spec without AWS)", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:

    run_spec = load_run_spec_module()
    bucket = args.bucket or ("llmq-artifacts" if args.offline else None)
    raw = read_spec(args.spec, bucket)
    prefix = f"{args.project}-{args.stage}"
    if args.offline:
        defaults = offline_defaults(run_spec, args.stage, args.region, bucket or "llmq-artifacts")
    else:
        session = boto3.session.Session(region_name=args.region)
        lambda_client = session.client("lambda")
        function = lambda_client.get_function_configuration(FunctionName=f"{prefix}-validate-input")
        defaults = local_defaults(run_spec, function, lambda_client.meta.region_name)
    outcome = run_spec.validate_spec(raw, defaults)
    if not outcome.valid:
        print(f"invalid spec {args.spec}:", file=sys.stderr)
        for problem in outcome.problems:
            print(f"  {problem.field}: {problem.message}", file=sys.stderr)
        return 2
    plan = outcome.run
    print(f"spec valid: {plan['model_name']} run {plan['run_id']} ({plan['algorithm']} {plan['scheme']})")
    if args.validate_only or args.offline:
        return 0
    region = session.region_name
    sfn = session.client("stepfunctions")
    account = session.client("sts").get_caller_identity()["Account"]
    machine = (
        f"arn:{session.get_partition_for_region(region)}:states:{region}:{account}:stateMachine:{prefix}-model-pipeline"
    )
    # The run id names the execution: a second start of the same spec returns the same execution.
    started = sfn.start_execution(stateMachineArn=machine, name=plan["run_id"], input=json.dumps(raw))
    print(f"execution {started['executionArn']}")
    described = follow(sfn, started["executionArn"], args.poll_seconds)
    status = described["status"]
    print(f"\noutcome: {status}")
    if status == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        print(f"  {output.get('outcome')}: model package {output.get('record', {}).get('model_package_arn')}")
    else:
        print(f"  {described.get('error')}: {described.get('cause')}")
    for label, link in console_links(region, plan, started["executionArn"]).items():
        print(f"  {label:13} {link}")
    return 0 if status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
