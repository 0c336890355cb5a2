"""Synthesize the app once, then give each test a fresh emulated account with the pipeline in it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# moto and the handlers' boto3 clients: fake credentials, one region, no real calls.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_REGION"] = "us-east-1"
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "llmq-test"

import boto3
from aws_cdk import App
from moto import mock_aws

from stacks.app_builder import build_stacks
from stacks.config import load_stage_config
from tests.aws_conformance import hook
from tests.aws_conformance.iam import PolicyEvaluator, policies_of_role
from tests.infra.conftest import cdk_context
from tests.workflow.harness import (
    REGION,
    Calls,
    Faults,
    FunctionUnderTest,
    Shims,
    TemplateResolver,
    _load_handler,
)

ROOT = Path(__file__).resolve().parents[2]
BASELINE_ENDPOINT = "llmq-dev-chat"
BASELINE_MODEL = "chat-bf16-v1"
BASELINE_CONFIG = "chat-bf16-v1-config"
SERVING_VARIANT = "AllTraffic"
CANDIDATE_ALARMS = ("latency-p95", "latency-p95-vs-baseline", "5xx", "4xx", "quality")


@dataclass
class SynthesizedPipeline:
    resolver: TemplateResolver
    stack: str
    definition: str
    role_arn: str
    state_machine_name: str
    functions: dict[str, FunctionUnderTest]
    bucket: str
    topic_arn: str
    key_arn: str
    subnets: list[str]
    security_group: str
    sagemaker_role_arn: str
    serving_image: str
    training_image: str
    state_machine_role: PolicyEvaluator
    # The role the state machine passes to the evaluate job, and its policy (the emulated job acts as it).
    evaluate_role_arn: str
    evaluate_role: PolicyEvaluator


def _role_evaluator(resolver: TemplateResolver, stack: str, role_ref: Any) -> PolicyEvaluator:
    """The synthesized policy of the role a Ref/GetAtt names, as an IAM evaluator."""
    logical_id = role_ref["Fn::GetAtt"][0] if "Fn::GetAtt" in role_ref else role_ref["Ref"]
    arn = resolver.resolve(stack, {"Fn::GetAtt": [logical_id, "Arn"]})
    return PolicyEvaluator(policies_of_role(resolver, stack, logical_id), name=arn)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedPipeline:
    outdir = tmp_path_factory.mktemp("cdk-workflow")
    context = cdk_context()
    app = App(context=context, outdir=str(outdir))
    stacks = build_stacks(app, load_stage_config(context, "dev"), nag=False)
    app.synth()
    templates = {
        stack.stack_name: json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
        for stack in vars(stacks).values()
    }
    resolver = TemplateResolver(templates)
    name = stacks.pipeline.stack_name
    (_, machine), *_ = resolver.resources_of_type(name, "AWS::StepFunctions::StateMachine").items()
    definition = resolver.resolve(name, machine["Properties"]["DefinitionString"])
    role_arn = resolver.resolve(name, machine["Properties"]["RoleArn"])
    functions = {}
    for stack in templates:
        for resource in resolver.resources_of_type(stack, "AWS::Lambda::Function").values():
            props = resource["Properties"]
            env = resolver.resolve(stack, props.get("Environment", {}).get("Variables", {}))
            folder_name = env.get("POWERTOOLS_SERVICE_NAME")
            if not folder_name or not (ROOT / "lambda" / folder_name / "handler.py").is_file():
                continue  # CDK's own helper functions (e.g. log retention)
            if folder_name == "rollback":
                # Its bounded waits sleep for real; the emulated endpoint moves on describes.
                env["POLL_SECONDS"] = "0"
            functions[props["FunctionName"]] = FunctionUnderTest(
                name=props["FunctionName"],
                folder=ROOT / "lambda" / folder_name,
                environment=env,
                role=_role_evaluator(resolver, stack, props["Role"]),
            )
    validate_env = next(f.environment for f in functions.values() if f.folder.name == "validate_input")
    parsed = json.loads(definition)
    create_job = parsed["States"]["Create training job"]["Parameters"]
    evaluate_role_arn = parsed["States"]["Create evaluate job"]["Parameters"]["RoleArn"]
    validate_env_all = validate_env
    return SynthesizedPipeline(
        resolver=resolver,
        stack=name,
        definition=definition,
        role_arn=role_arn,
        state_machine_name=machine["Properties"]["StateMachineName"],
        functions=functions,
        bucket=validate_env["ARTIFACT_BUCKET"],
        topic_arn=resolver.resolve(name, {"Ref": next(iter(resolver.resources_of_type(name, "AWS::SNS::Topic")))}),
        key_arn=validate_env_all["KMS_KEY_ARN"],
        subnets=create_job["VpcConfig"]["Subnets"],
        security_group=create_job["VpcConfig"]["SecurityGroupIds"][0],
        sagemaker_role_arn=create_job["RoleArn"],
        serving_image=validate_env["SERVING_IMAGE_URI"],
        training_image=validate_env["QUANTIZE_IMAGE_URI"],
        state_machine_role=_role_evaluator(resolver, name, machine["Properties"]["RoleArn"]),
        evaluate_role_arn=evaluate_role_arn,
        # A role without RoleName is named after its logical id in the emulated account (harness.py).
        evaluate_role=_role_evaluator(resolver, name, {"Ref": evaluate_role_arn.rsplit("/", 1)[-1]}),
    )


# EmulatedAccount's clients: its field -> the service (Any: boto3's stubs want each name as a literal).
ACCOUNT_CLIENTS: dict[str, Any] = {
    "sfn": "stepfunctions",
    "sagemaker": "sagemaker",
    "s3": "s3",
    "cloudwatch": "cloudwatch",
    "sns": "sns",
    "autoscaling": "application-autoscaling",
}


@dataclass
class EmulatedAccount:
    synthesized: SynthesizedPipeline
    state_machine_arn: str
    faults: Faults
    calls: Calls
    shims: Shims
    sfn: Any
    sagemaker: Any
    s3: Any
    cloudwatch: Any
    sns: Any
    autoscaling: Any

    def spec(self, **overrides: Any) -> dict[str, Any]:
        bucket = self.synthesized.bucket
        spec: dict[str, Any] = {
            "model_name": "llama-8b",
            "run_id": "run-001",
            "source_model_uri": f"s3://{bucket}/sources/llama-8b/",
            "model_parameters_billion": 8.03,
            "calibration_uri": f"s3://{bucket}/datasets/calibration/",
            "validation_uri": f"s3://{bucket}/datasets/validation/",
            "algorithm": "gptq",
            "scheme": "W4A16",
            "group_size": 128,
            "num_calibration_samples": 256,
            "max_seq_length": 2048,
            # moto checks instance types against an old enum (no g5): one it knows.
            "serving_instance_type": "ml.g4dn.2xlarge",
            "baseline_endpoint": BASELINE_ENDPOINT,
            # Wait states advance a virtual clock (harness.py): real durations cost nothing.
            "canary": [
                {"weight": 10, "bake_minutes": 10},
                {"weight": 50, "bake_minutes": 10},
                {"weight": 100, "bake_minutes": 10},
            ],
            "timing": {"poll_seconds": 60},
        }
        spec.update(overrides)
        return spec

    def notifications(self) -> list[dict[str, Any]]:
        from moto.sns.models import sns_backends

        topic = sns_backends["123456789012"][REGION].topics[self.synthesized.topic_arn]
        return [json.loads(message) for _, message, *_ in topic.sent_notifications]

    def instance_seconds(self, variant: str) -> float:
        """Instance-seconds the variant billed on the virtual clock (a fleet at weight 0 bills too)."""
        return float(self.shims.timeline.instance_seconds.get(f"{BASELINE_ENDPOINT}/{variant}", 0.0))

    def variants(self) -> dict[str, int]:
        endpoint = self.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
        return {v["VariantName"]: v.get("CurrentWeight", 0) for v in endpoint["ProductionVariants"]}

    def endpoint_tags(self) -> dict[str, str]:
        arn = self.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)["EndpointArn"]
        # AddTags overwrites a key in SageMaker; moto appends, so the last value wins here.
        return {t["Key"]: t["Value"] for t in self.sagemaker.list_tags(ResourceArn=arn)["Tags"]}


def sm_backend() -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends["123456789012"][REGION]


@pytest.fixture
def account(synthesized: SynthesizedPipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedAccount]:
    faults = Faults()
    calls = Calls()
    for function in synthesized.functions.values():
        function.module = _load_handler(function.folder)
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config):  # type: ignore[call-overload]
        shims = Shims(
            monkeypatch,
            synthesized.functions,
            faults,
            calls,
            job_roles={synthesized.evaluate_role_arn: synthesized.evaluate_role},
        )
        # Every call the state machine and the functions make is checked as AWS checks it.
        hook.install(monkeypatch, record=calls.checked)
        hook.install_step_functions_principal(monkeypatch, synthesized.state_machine_role)
        clients = {field: boto3.client(service, region_name=REGION) for field, service in ACCOUNT_CLIENTS.items()}
        s3 = clients["s3"]
        s3.create_bucket(Bucket=synthesized.bucket)
        for key in (
            "sources/llama-8b/config.json",
            "datasets/calibration/part-0.jsonl",
            "datasets/validation/part-0.jsonl",
        ):
            s3.put_object(Bucket=synthesized.bucket, Key=key, Body=b"{}")
        topic_name = synthesized.topic_arn.rsplit(":", 1)[-1]
        clients["sns"].create_topic(Name=topic_name)
        sm = clients["sagemaker"]
        # The baseline endpoint as the platform team created it: one variant, any names.
        sm.create_model(
            ModelName=BASELINE_MODEL,
            ExecutionRoleArn=synthesized.sagemaker_role_arn,
            PrimaryContainer={"Image": synthesized.serving_image},
        )
        sm.create_endpoint_config(
            EndpointConfigName=BASELINE_CONFIG,
            ProductionVariants=[
                {
                    "VariantName": SERVING_VARIANT,
                    "ModelName": BASELINE_MODEL,
                    "InstanceType": "ml.g4dn.12xlarge",
                    "InitialInstanceCount": 2,
                    "InitialVariantWeight": 1,
                }
            ],
        )
        sm.create_endpoint(EndpointName=BASELINE_ENDPOINT, EndpointConfigName=BASELINE_CONFIG)
        shims.world.meter(sm_backend())
        # The monitoring stack's per-variant alarms (docs/contracts.md), all OK.
        cw = clients["cloudwatch"]
        for variant in ("baseline", "candidate"):
            for signal in CANDIDATE_ALARMS:
                name = f"{BASELINE_ENDPOINT}-{variant}-{signal}"
                cw.put_metric_alarm(
                    AlarmName=name,
                    MetricName="ModelLatency",
                    Namespace="AWS/SageMaker",
                    Statistic="Average",
                    Period=60,
                    EvaluationPeriods=5,
                    Threshold=1.0,
                    ComparisonOperator="GreaterThanThreshold",
                )
                cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="healthy")
        calls.sagemaker.clear()  # the account's setup above is not the pipeline's doing
        arn = clients["sfn"].create_state_machine(
            name=synthesized.state_machine_name, definition=synthesized.definition, roleArn=synthesized.role_arn
        )["stateMachineArn"]
        for function in synthesized.functions.values():
            clients_cache = getattr(function.module, "clients", None)
            if clients_cache is not None:
                clients_cache.cache_clear()
        yield EmulatedAccount(
            synthesized=synthesized,
            state_machine_arn=arn,
            faults=faults,
            calls=calls,
            shims=shims,
            **clients,
        )
