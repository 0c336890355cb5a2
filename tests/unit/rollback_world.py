"""A canaried endpoint in the emulator (moto), as the pipeline leaves it, for the rollback tests.

Also the one test-only shim: moto 5.2.5 does not implement SageMaker's
UpdateEndpoint, so ``SageMakerWithUpdateEndpoint`` records the call and applies
its end state (the endpoint now serves the given config) to moto's backend.
The rollback code itself calls the real boto3 method and is not patched.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[2]
ROLLBACK_DIR = ROOT / "lambda" / "rollback"
if str(ROLLBACK_DIR) not in sys.path:
    sys.path.insert(0, str(ROLLBACK_DIR))

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
PREFIX = "llmq-dev"
ENDPOINT = "llmq-dev-chat"
MODEL = "smollm2-135m"
RUN_ID = "run-0042"
BUCKET = "llmq-dev-artifacts"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/llmq-dev-sagemaker"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/serve:1"


def use_emulated_aws(monkeypatch: Any, **extra: str) -> None:
    """Fake credentials and region for moto, no endpoint override, fresh cached clients."""
    from rollback_settings import aws_client

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in {**env, **extra}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws_client.cache_clear()


def load_handler_module() -> ModuleType:
    """lambda/rollback/handler.py under a unique module name (every function has a handler.py)."""
    spec = importlib.util.spec_from_file_location("rollback_handler", ROLLBACK_DIR / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SageMakerWithUpdateEndpoint:
    """The moto client plus UpdateEndpoint (missing in moto 5.2.5), applied to moto's backend."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.update_endpoint_calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        from moto.sagemaker.models import sagemaker_backends

        self.update_endpoint_calls.append(kwargs)
        backend = sagemaker_backends[ACCOUNT][REGION]
        # Real SageMaker validates both names first; so does this shim (via describe).
        self._client.describe_endpoint(EndpointName=kwargs["EndpointName"])
        config = self._client.describe_endpoint_config(EndpointConfigName=kwargs["EndpointConfigName"])
        endpoint = backend.endpoints[kwargs["EndpointName"]]
        endpoint.endpoint_config_name = kwargs["EndpointConfigName"]
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        return {"EndpointArn": endpoint.arn}


@dataclass
class Clients:
    sagemaker: Any
    s3: Any
    sns: Any


@dataclass
class World:
    sagemaker: SageMakerWithUpdateEndpoint
    s3: Any
    sns: Any
    sqs: Any
    topic_arn: str
    queue_url: str
    package_arn: str
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def clients(self) -> Clients:
        return Clients(sagemaker=self.sagemaker, s3=self.s3, sns=self.sns)

    def weights(self, endpoint: str = ENDPOINT) -> dict[str, float]:
        described = self.sagemaker.describe_endpoint(EndpointName=endpoint)
        return {v["VariantName"]: v.get("CurrentWeight") for v in described["ProductionVariants"]}

    def tags(self, endpoint: str = ENDPOINT) -> dict[str, str]:
        arn = self.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointArn"]
        return {t["Key"]: t["Value"] for t in self.sagemaker.list_tags(ResourceArn=arn)["Tags"]}

    def rollback_records(self) -> dict[str, dict[str, Any]]:
        prefix = f"models/{MODEL}/{RUN_ID}/rollbacks/"
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"]: json.loads(self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in listed}

    def notifications(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return messages
            for message in got:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def create_config(self, name: str, variants: dict[str, float]) -> None:
        for variant in variants:
            model = f"{name}-{variant}"
            self.sagemaker.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": variant,
                    "ModelName": f"{name}-{variant}",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.g4dn.2xlarge",  # moto knows no g5
                    "InitialVariantWeight": weight,
                }
                for variant, weight in variants.items()
            ],
        )

    def deploy(
        self, *, phase: str, endpoint: str = ENDPOINT, tags: dict[str, str] | None = None, run_id: str = RUN_ID
    ) -> None:
        """The endpoint as the pipeline leaves it in ``phase`` (docs/contracts.md tags)."""
        approved = f"{PREFIX}-{MODEL}-{run_id}-approved"
        self.create_config(approved, {"baseline": 1.0})
        if phase == "canary":
            config = f"{PREFIX}-{MODEL}-{run_id}"
            self.create_config(config, {"baseline": 95.0, "candidate": 5.0})
        else:
            config = f"{PREFIX}-{MODEL}-{run_id}-promoted"
            self.create_config(config, {"candidate": 1.0})
        base_tags = {
            "llmq:phase": phase,
            "llmq:model-name": MODEL,
            "llmq:run-id": run_id,
            "llmq:model-package-arn": self.package_arn,
            "llmq:last-approved-config": approved,
        }
        base_tags.update(tags or {})
        self.sagemaker.create_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=config,
            Tags=[{"Key": k, "Value": v} for k, v in base_tags.items() if v is not None],
        )


def build_world() -> World:
    """Bucket, topic (with a queue to read what was published) and a model package; call inside mock_aws."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name=f"{PREFIX}-rollbacks")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="rollback-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName=f"{PREFIX}-{MODEL}")
    package_arn = sagemaker.create_model_package(
        ModelPackageGroupName=f"{PREFIX}-{MODEL}",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
    environ = {
        "ARTIFACT_BUCKET": BUCKET,
        "ROLLBACK_TOPIC_ARN": topic_arn,
        "RESOURCE_PREFIX": PREFIX,
        "MONITORED_ENDPOINTS": f"{ENDPOINT},{PREFIX}-gone",
        "AWS_LAMBDA_FUNCTION_NAME": f"{PREFIX}-rollback",
    }
    return World(
        sagemaker=SageMakerWithUpdateEndpoint(sagemaker),
        s3=s3,
        sns=sns,
        sqs=sqs,
        topic_arn=topic_arn,
        queue_url=queue_url,
        package_arn=package_arn,
        environ=environ,
    )


def alarm_event(
    alarm_name: str = f"{ENDPOINT}-candidate-5xx", state: str = "ALARM", timestamp: str = "2025-01-01T00:00:00.000+0000"
) -> dict[str, Any]:
    """A CloudWatch 'Alarm State Change' event as EventBridge delivers it."""
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": timestamp.replace(".000+0000", "Z"),
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": {
                "value": state,
                "reason": "Threshold Crossed: 3 out of the last 5 datapoints were greater than the threshold (1.0).",
                "reasonData": "{}",
                "timestamp": timestamp,
            },
            "previousState": {"value": "OK", "reason": "", "timestamp": "2024-12-31T23:00:00.000+0000"},
            "configuration": {"description": "candidate 5xx rate", "metrics": []},
        },
    }
