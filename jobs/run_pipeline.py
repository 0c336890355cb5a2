"""Start a pipeline execution from a model spec, follow it state by state, print the outcome.

    python -m jobs.run_pipeline docs/examples/gptq-w4a16.yaml --stage dev --bucket <artifact bucket>

The spec is validated locally first with the same model the validate Lambda uses
(lambda/validate_input/run_spec.py, imported by path), so a bad spec fails here,
with every problem listed, before anything starts. The execution is named after
the run id: starting the same spec twice attaches to the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import yaml

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


def read_spec(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def local_defaults(run_spec: ModuleType, function: dict[str, Any]) -> Any:
    """The validate function's own environment, so local and remote judge alike."""
    env = function["Environment"]["Variables"]
    return run_spec.Defaults(
        resource_prefix=env["RESOURCE_PREFIX"],
        artifact_bucket=env["ARTIFACT_BUCKET"],
        allowed_buckets=tuple(json.loads(env.get("ALLOWED_BUCKETS", "[]"))),
        monitored_endpoints=tuple(json.loads(env["MONITORED_ENDPOINTS"])),
        quantize_instance_type=env["QUANTIZE_INSTANCE_TYPE"],
        evaluate_instance_type=env["EVALUATE_INSTANCE_TYPE"],
        serving_instance_type=env["SERVING_INSTANCE_TYPE"],
        quantize_image_uri=env["QUANTIZE_IMAGE_URI"],
        evaluate_image_uri=env["EVALUATE_IMAGE_URI"],
        serving_image_uri=env["SERVING_IMAGE_URI"],
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
    args = parser.parse_args(argv)

    run_spec = load_run_spec_module()
    raw = read_spec(args.spec)
    prefix = f"{args.project}-{args.stage}"
    session = boto3.session.Session(region_name=args.region)
    region = session.region_name
    function = session.client("lambda").get_function_configuration(FunctionName=f"{prefix}-validate-input")
    outcome = run_spec.validate_spec(raw, local_defaults(run_spec, function))
    if not outcome.valid:
        print(f"invalid spec {args.spec}:", file=sys.stderr)
        for problem in outcome.problems:
            print(f"  {problem.field}: {problem.message}", file=sys.stderr)
        return 2
    plan = outcome.run
    print(f"spec valid: {plan['model_name']} run {plan['run_id']} ({plan['algorithm']} {plan['scheme']})")
    if args.validate_only:
        return 0
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
