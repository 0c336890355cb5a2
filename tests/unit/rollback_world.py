"""A canaried endpoint in the emulator (moto), as the pipeline leaves it, for the rollback tests.

moto is lenient where SageMaker is not, so ``EmulatedSageMaker`` wraps moto's
client and models SageMaker as its API reference documents it (the rollback
code itself calls the real boto3 methods and is not patched):

- UpdateEndpoint (missing in moto 5.2.5) and UpdateEndpointWeightsAndCapacities
  set the endpoint ``Updating``; it stays so for ``updating_polls``
  DescribeEndpoint calls, showing the OLD config (and the old CurrentWeight with
  the new DesiredWeight), then ``InService`` on the new state;
- a change while the endpoint is Updating or Creating fails with
  ValidationException "Cannot update in-progress endpoint";
- ``fail_next_update_endpoint(reason)``: the next UpdateEndpoint fails; the
  endpoint returns to InService on the OLD config with ``FailureReason`` set;
- ``hold_updating(endpoint, polls, status)``: a change someone else started (e.g.
  the state machine's), the endpoint reports Updating (or Creating) for that many polls;
- ``events``: every AddTags and every change, in order, to check what came first.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
ROLLBACK_DIR = ROOT / "lambda" / "rollback"
# As in the function's asset: its own folder and the shared modules (stacks/python_function.py).
for _path in (ROOT / "lambda" / "shared", ROLLBACK_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

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


def load_handler_module(folder: Path = ROLLBACK_DIR) -> ModuleType:
    """lambda/<function>/handler.py under a unique module name (every function has a handler.py)."""
    spec = importlib.util.spec_from_file_location(f"{folder.name}_handler", folder / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVING = "AllTraffic"  # StageConfig.serving_variant's default: the serving variant keeps its name
CANDIDATE = "candidate"
UPDATING_POLLS = 2


@dataclass
class _Pending:
    polls_left: int
    config: str | None = None  # UpdateEndpoint's target; None: the config does not change
    old_weights: dict[str, float] = field(default_factory=dict)  # shown as CurrentWeight while Updating
    failure: str | None = None  # an injected failure of UpdateEndpoint
    status: str = "Updating"


class EmulatedSageMaker:
    """moto's SageMaker client plus the documented Updating/InService behaviour moto lacks."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.update_endpoint_calls: list[dict[str, Any]] = []
        self.weight_calls: list[dict[str, Any]] = []
        self.events: list[tuple[str, Any]] = []
        self.updating_polls = UPDATING_POLLS
        self.describe_calls = 0
        self._pending: dict[str, _Pending] = {}
        self._failure_reason: dict[str, str] = {}
        self._next_update_failure: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    # --- test controls -----------------------------------------------------------------------------

    def hold_updating(self, endpoint: str, polls: int, status: str = "Updating") -> None:
        self._pending[endpoint] = _Pending(polls_left=polls, status=status)

    def fail_next_update_endpoint(self, reason: str) -> None:
        self._next_update_failure = reason

    # --- the API ---------------------------------------------------------------------------------------

    def describe_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        name = kwargs["EndpointName"]
        described: dict[str, Any] = self._client.describe_endpoint(**kwargs)
        self.describe_calls += 1
        pending = self._pending.get(name)
        if pending is not None and pending.polls_left > 0:
            pending.polls_left -= 1
            described["EndpointStatus"] = pending.status
            for variant in described.get("ProductionVariants", []):
                if variant["VariantName"] in pending.old_weights:
                    variant["CurrentWeight"] = pending.old_weights[variant["VariantName"]]
            return described
        if pending is not None:
            del self._pending[name]
            self._complete(name, pending)
            described = self._client.describe_endpoint(**kwargs)
        if name in self._failure_reason:
            described["FailureReason"] = self._failure_reason[name]
        return described

    def add_tags(self, **kwargs: Any) -> dict[str, Any]:
        self.events.append(("AddTags", {t["Key"]: t["Value"] for t in kwargs["Tags"]}))
        result: dict[str, Any] = self._client.add_tags(**kwargs)
        return result

    def _refuse_if_in_progress(self, name: str, operation: str) -> None:
        if name in self._pending:
            arn = self._client.describe_endpoint(EndpointName=name)["EndpointArn"]
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": f'Cannot update in-progress endpoint "{arn}".'}},
                operation,
            )

    def update_endpoint_weights_and_capacities(self, **kwargs: Any) -> dict[str, Any]:
        name = kwargs["EndpointName"]
        self._refuse_if_in_progress(name, "UpdateEndpointWeightsAndCapacities")
        before = self._client.describe_endpoint(EndpointName=name)["ProductionVariants"]
        result: dict[str, Any] = self._client.update_endpoint_weights_and_capacities(**kwargs)
        self.weight_calls.append(kwargs)
        self.events.append(("UpdateEndpointWeightsAndCapacities", kwargs["DesiredWeightsAndCapacities"]))
        old = {v["VariantName"]: v.get("CurrentWeight") for v in before}
        self._pending[name] = _Pending(polls_left=self.updating_polls, old_weights=old)
        return result

    def update_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        name, config = kwargs["EndpointName"], kwargs["EndpointConfigName"]
        # Real SageMaker validates both names first; so does this model (via describe).
        described = self._client.describe_endpoint(EndpointName=name)
        self._client.describe_endpoint_config(EndpointConfigName=config)
        self._refuse_if_in_progress(name, "UpdateEndpoint")
        self.update_endpoint_calls.append(kwargs)
        self.events.append(("UpdateEndpoint", config))
        failure, self._next_update_failure = self._next_update_failure, None
        self._failure_reason.pop(name, None)
        self._pending[name] = _Pending(polls_left=self.updating_polls, config=config, failure=failure)
        return {"EndpointArn": described["EndpointArn"]}

    def _complete(self, name: str, pending: _Pending) -> None:
        if pending.config is None:
            return
        if pending.failure is not None:
            # The update failed: back in service on the old config, FailureReason set.
            self._failure_reason[name] = pending.failure
            return
        from moto.sagemaker.models import sagemaker_backends

        config = self._client.describe_endpoint_config(EndpointConfigName=pending.config)
        endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[name]
        endpoint.endpoint_config_name = pending.config
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])


@dataclass
class Clients:
    sagemaker: Any
    s3: Any
    sns: Any
    autoscaling: Any = field(default_factory=lambda: boto3.client("application-autoscaling", region_name=REGION))


@dataclass
class World:
    sagemaker: EmulatedSageMaker
    s3: Any
    sns: Any
    sqs: Any
    topic_arn: str
    queue_url: str
    package_arn: str
    environ: dict[str, str] = field(default_factory=dict)
    # Config name -> its variants' instance type (default ml.g4dn.2xlarge).
    instance_types: dict[str, str] = field(default_factory=dict)

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

    def create_config(self, name: str, variants: dict[str, float], **extra: Any) -> None:
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
                    "InstanceType": self.instance_types.get(name, "ml.g4dn.2xlarge"),  # moto knows no g5
                    "InitialVariantWeight": weight,
                }
                for variant, weight in variants.items()
            ],
            **extra,
        )

    def deploy(
        self,
        *,
        phase: str,
        endpoint: str = ENDPOINT,
        tags: dict[str, str | None] | None = None,
        run_id: str = RUN_ID,
        approved_config: str | None = None,
        capture: dict[str, Any] | None = None,
    ) -> None:
        """The endpoint as the pipeline leaves it in ``phase`` (docs/contracts.md tags).

        ``capture``: the run's configs' DataCaptureConfig (the stage captures data).

        ``approved_config`` is the single-variant config that served before the run
        (default ``<prefix>-<model>-<run>-approved``; the platform team's own may have any name).
        """
        approved = approved_config or f"{PREFIX}-{MODEL}-{run_id}-approved"
        self.create_config(approved, {SERVING: 1.0})
        if phase == "canary":
            config = f"{PREFIX}-{MODEL}-{run_id}"
            self.create_config(
                config, {SERVING: 95.0, CANDIDATE: 5.0}, **({"DataCaptureConfig": capture} if capture else {})
            )
        else:
            # Promotion puts the candidate's model into the serving variant: one variant.
            config = self.promoted_config(run_id)
            self.create_config(config, {SERVING: 1.0})
        base_tags: dict[str, str | None] = {
            "llmq:phase": phase,
            "llmq:model-name": MODEL,
            "llmq:run-id": run_id,
            "llmq:model-package-arn": self.package_arn,
            "llmq:last-approved-config": approved,
        }
        if phase == "promoted":
            base_tags["llmq:promoted-at"] = datetime.now(UTC).isoformat(timespec="seconds")
        base_tags.update(tags or {})
        self.sagemaker.create_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=config,
            Tags=[{"Key": k, "Value": v} for k, v in base_tags.items() if v is not None],
        )

    def promoted_config(self, run_id: str = RUN_ID) -> str:
        """The promotion's config (the state machine creates it for the promotion's UpdateEndpoint)."""
        config = f"{PREFIX}-{MODEL}-{run_id}-promoted"
        try:
            self.sagemaker.describe_endpoint_config(EndpointConfigName=config)
        except ClientError:
            self.create_config(config, {SERVING: 1.0})
        return config


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
        "MONITORED_ENDPOINTS": json.dumps([ENDPOINT, f"{PREFIX}-gone"]),
        "AWS_LAMBDA_FUNCTION_NAME": f"{PREFIX}-rollback",
        "BASELINE_VARIANT": SERVING,
        # The tests inject the sleep; the deadline is counted on their clock.
        "POLL_SECONDS": "5",
        "WAIT_IN_SERVICE_SECONDS": "60",
    }
    return World(
        sagemaker=EmulatedSageMaker(sagemaker),
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
