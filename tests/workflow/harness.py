"""Run the synthesized pipeline state machine in moto and observe what it did.

What is real here: the state machine definition from the synthesized template
(intrinsics resolved to the emulated account), moto's Step Functions
interpreter, moto's S3/SageMaker/CloudWatch/SNS backends, and the two Lambda
handlers (run in-process against the same emulated services).

What stands in for AWS, each rule written down in docs/aws-behaviour.md:

- every call the state machine or a Lambda makes is checked as AWS would
  check it (tests/aws_conformance: the service model's names, types, lengths,
  patterns, enums and ranges; the caller's synthesized IAM policy; Step
  Functions' real error names and causes);
- SageMaker's documented behaviour on top of moto (tests/workflow/sagemaker_world.py):
  jobs that take polls, endpoints that are Updating for a while and refuse
  mutations meanwhile, failed updates that return InService on the old config,
  the NVMe volume-key refusal, the autoscaling rule, billing per instance;
- Lambda: moto's non-Docker Lambda only echoes or replays queued payloads; the
  harness routes an invoke to the function's real handler instead, with the
  environment the template gives it, acting as the function's own role, and
  reports exceptions like Lambda does (``X-Amz-Function-Error: Unhandled``);
- DescribeAlarms: CloudWatch applies AlarmNamePrefix/AlarmNames and StateValue
  together; moto applies only the first it finds. DescribeAlarmHistory is not
  in moto: the harness records every alarm state change and answers from it;
- S3 GetObject: the SDK integration returns ``Body`` as a string; moto passes the
  stream on, so the shim reads it (only top-level streaming bodies);
- time: Wait states and retry intervals advance a virtual clock instead of
  sleeping, so a 24-hour bake runs in milliseconds and instance-seconds are
  counted on that clock;
- the jobs' containers: ``_after_create_training_job`` writes what the quantize job
  would upload (manifest, config); the evaluate job runs as its own role, reads its
  inputs, invokes both variants and writes its reports (tests/workflow/evaluate_job.py),
  against SageMaker Runtime as documented (InvokeEndpoint, TargetVariant).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.response import StreamingBody
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.cloudwatch.models import CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk as StateTaskServiceAwsSdkStreams,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from tests.aws_conformance.hook import acting_as
from tests.aws_conformance.iam import PolicyEvaluator
from tests.function_path import LambdaContext
from tests.workflow.evaluate_job import EvaluateJob, Invocation, install_runtime
from tests.workflow.sagemaker_world import SageMakerWorld, Timeline, WorldFaults

ROOT = Path(__file__).resolve().parents[2]
HISTORY_LIMIT = 25_000
# Step Functions' quota on a state's input, output and a task's result, in UTF-8 bytes (256 KiB);
# a result over it fails the state with States.DataLimitExceeded, which States.ALL does not catch.
PAYLOAD_LIMIT_BYTES = 256 * 1024
ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


# ----- template intrinsics -> values in the emulated account


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _physical(logical_id: str, resource: dict[str, Any]) -> dict[str, str]:  # noqa: PLR0911 - one return per type
    """Ref and attribute values of a resource as the emulated account would name it."""
    kind = resource["Type"]
    props = resource.get("Properties", {})
    if kind == "AWS::Lambda::Function":
        name = props.get("FunctionName", logical_id)
        return {"Ref": name, "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"}
    if kind == "AWS::SNS::Topic":
        arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{props.get('TopicName', logical_id)}"
        return {"Ref": arn, "TopicArn": arn}
    if kind == "AWS::IAM::Role":
        name = props.get("RoleName", logical_id)
        return {"Ref": name, "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"}
    if kind == "AWS::S3::Bucket":
        name = logical_id.lower()[:63]
        return {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
    if kind == "AWS::KMS::Key":
        key_id = f"{_short_hash(logical_id)}-test-key"
        return {"Ref": key_id, "Arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}", "KeyId": key_id}
    if kind == "AWS::EC2::Subnet":
        return {"Ref": f"subnet-{_short_hash(logical_id)}"}
    if kind == "AWS::EC2::SecurityGroup":
        return {"Ref": f"sg-{_short_hash(logical_id)}", "GroupId": f"sg-{_short_hash(logical_id)}"}
    if kind == "AWS::StepFunctions::StateMachine":
        name = props.get("StateMachineName", logical_id)
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        return {"Ref": arn, "Arn": arn, "Name": name}
    if kind == "AWS::Logs::LogGroup":
        name = props.get("LogGroupName", logical_id)
        return {"Ref": name, "Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"}
    if kind == "AWS::SQS::Queue":
        name = props.get("QueueName", logical_id)
        return {
            "Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
            "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        }
    service = kind.split("::")[1].lower()
    return {"Ref": logical_id, "Arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical_id}"}


class TemplateResolver:
    """Resolves Ref, GetAtt, Join, Sub, ImportValue, FindInMap and Select across the app's templates."""

    def __init__(self, templates: dict[str, dict[str, Any]]) -> None:
        self.templates = templates
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, template in templates.items():
            for output in template.get("Outputs", {}).values():
                name = output.get("Export", {}).get("Name")
                if isinstance(name, str):
                    self.exports[name] = (stack, output["Value"])

    def resolve(self, stack: str, value: Any) -> Any:  # noqa: PLR0911 - one return per intrinsic
        template = self.templates[stack]
        if isinstance(value, list):
            return [self.resolve(stack, item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), *_ = value.items()
            if fn == "Ref":
                if arg in PSEUDO:
                    return PSEUDO[arg]
                return _physical(arg, template["Resources"][arg])["Ref"]
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return _physical(logical_id, template["Resources"][logical_id])[attribute]
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(stack, part)) for part in parts)
            if fn == "Fn::ImportValue":
                producer, exported = self.exports[self.resolve(stack, arg)]
                return self.resolve(producer, exported)
            if fn == "Fn::FindInMap":
                mapping, top, second = (self.resolve(stack, part) for part in arg)
                return template["Mappings"][mapping][top][second]
            if fn == "Fn::Sub":
                return self._substitute(stack, arg)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(self.resolve(stack, index))]
        return {key: self.resolve(stack, item) for key, item in value.items()}

    def _substitute(self, stack: str, arg: Any) -> str:
        """Fn::Sub: ${Pseudo}, ${LogicalId}, ${LogicalId.Attr} and explicit variables (image asset URIs use it)."""
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resources = self.templates[stack]["Resources"]

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(stack, variables[name]))
            if name in PSEUDO:
                return str(PSEUDO[name])
            logical_id, _, attribute = name.partition(".")
            return str(_physical(logical_id, resources[logical_id])[attribute or "Ref"])

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    def resources_of_type(self, stack: str, kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.templates[stack]["Resources"].items() if r["Type"] == kind}


# ----- shims (test code only)


@dataclass
class FunctionUnderTest:
    name: str
    folder: Path
    environment: dict[str, str]
    role: PolicyEvaluator | None = None
    module: Any = None


def _load_handler(folder: Path) -> Any:
    # As in the function's asset: its own folder and the shared modules (stacks/python_function.py).
    for path in (folder.parent / "shared", folder):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    spec = importlib.util.spec_from_file_location(f"handler_{folder.name}", folder / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Faults(WorldFaults):
    """Per-scenario behaviour of the emulated jobs and services."""

    gate_passed: bool = True
    gate_reasons: list[str] = field(default_factory=list)
    manifest_overrides: dict[str, Any] = field(default_factory=dict)
    alarm_at_candidate_weight: int | None = None
    alarm_name: str | None = None
    # After the injected alarm: run the rollback function on it, then clear the alarm
    # (missing data is not breaching once traffic moved away).
    rollback_function_acts: bool = False
    throttle_once: set[str] = field(default_factory=set)
    # Extra bytes in report.json (a long evaluation); the pipeline must not read it whole.
    report_padding_bytes: int = 0
    # An alarm the evaluation's load test trips (delivered to the rollback function at once).
    alarm_during_evaluation: str | None = None
    # Run the quality sampler (as EventBridge's schedule would) once the candidate has this weight.
    sample_quality_at_candidate_weight: int | None = None


@dataclass
class Calls:
    """What the state machine asked of the emulated services, in order."""

    sagemaker: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)
    # Every call a principal made (tests/aws_conformance/hook.py), after its checks passed.
    checked: list[Any] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.sagemaker]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [params for called, params in self.sagemaker if called == name]


class Shims:
    """Installs the stand-ins on moto's classes (undone by pytest's monkeypatch)."""

    def __init__(
        self,
        monkeypatch: Any,
        functions: dict[str, FunctionUnderTest],
        faults: Faults,
        calls: Calls,
        job_roles: dict[str, PolicyEvaluator] | None = None,
    ) -> None:
        self.functions = functions
        self.faults = faults
        self.calls = calls
        # Role ARN -> its synthesized policy: the jobs' containers act as the role they are given.
        self.job_roles = job_roles or {}
        self.invocations: list[Invocation] = []
        install_runtime(monkeypatch, self.invocations)
        self._env_lock = threading.Lock()
        shim = self

        def invoke(  # noqa: PLR0917 - moto calls it with these positional arguments
            backend: Any,
            function_name: str,
            qualifier: Any,
            body: Any,
            headers: Any,
            response_headers: Any,
        ) -> bytes:
            return shim._invoke(function_name, body, response_headers)

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
        monkeypatch.setattr(SageMakerResponse, "update_endpoint", _update_endpoint_response, raising=False)
        install_string_bodies(monkeypatch)
        monkeypatch.setattr(CloudWatchResponse, "describe_alarms", _describe_alarms)
        self.alarm_history: list[dict[str, Any]] = []
        self.pending_alarm: str | None = None
        self.rollback_results: list[Any] = []
        self.quality_results: list[Any] = []

        def describe_alarm_history(response: Any) -> Any:
            return shim._describe_alarm_history(response)

        monkeypatch.setattr(CloudWatchResponse, "describe_alarm_history", describe_alarm_history, raising=False)
        original_set_state = CloudWatchBackend.set_alarm_state

        def set_alarm_state(backend: Any, alarm_name: str, reason: str, reason_data: Any, state_value: str) -> None:
            old = backend.alarms[alarm_name].state_value if alarm_name in backend.alarms else None
            original_set_state(backend, alarm_name, reason, reason_data, state_value)
            if old != state_value:
                shim.alarm_history.append(_history_item(alarm_name, old, state_value, reason))

        monkeypatch.setattr(CloudWatchBackend, "set_alarm_state", set_alarm_state)
        self.timeline = Timeline()
        self.world = SageMakerWorld(monkeypatch, faults, self.timeline)
        timeline = self.timeline

        def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
            timeline.advance(wait_seconds)

        monkeypatch.setattr(WaitFunction, "_wait_interval", wait_interval)
        monkeypatch.setattr(retrier_decl, "time", _VirtualTime(timeline))
        for method in (
            "describe_training_job",
            "create_training_job",
            "create_processing_job",
            "create_model",
            "create_endpoint_config",
            "update_endpoint",
            "update_endpoint_weights_and_capacities",
            "update_model_package",
            "create_model_package",
            "create_model_package_group",
        ):
            original = getattr(SageMakerModelBackend, method)
            monkeypatch.setattr(SageMakerModelBackend, method, self._observe(method, original))

    def _observe(self, method: str, original: Callable[..., Any]) -> Callable[..., Any]:
        shim = self

        def wrapper(backend: Any, *args: Any, **kwargs: Any) -> Any:
            if method in shim.faults.throttle_once:
                shim.faults.throttle_once.discard(method)
                shim.calls.throttled.append(method)
                raise JsonRESTError("ThrottlingException", "Rate exceeded")
            shim.calls.sagemaker.append((method, copy.deepcopy(kwargs)))
            result = original(backend, *args, **kwargs)
            hook = getattr(shim, f"_after_{method}", None)
            if hook:
                hook(backend, kwargs)
            return result

        return wrapper

    # The jobs' outputs (what the containers would upload)

    def _after_create_training_job(self, backend: Any, kwargs: dict[str, Any]) -> None:
        name = kwargs["training_job_name"]
        output = kwargs["output_data_config"]["S3OutputPath"].rstrip("/")
        bucket, _, prefix = output.removeprefix("s3://").partition("/")
        hyper = kwargs["hyper_parameters"]
        manifest = {
            "quantization": {
                # The job names the algorithm "auto" for recipe auto (its search records the winner).
                "algorithm": hyper.get("algorithm", "auto"),
                "scheme": hyper["scheme"],
                "group_size": int(hyper["group-size"]) if "group-size" in hyper else None,
                "ignore": hyper["ignore"].split(","),
            },
            "calibration": {"sha256": "c" * 64, "samples_used": int(hyper["num-calibration-samples"])},
            "source": {"sha256": "s" * 64},
            "versions": {
                "llmcompressor": "0.14.0.1",
                "compressed_tensors": "0.20.0",
                "transformers": "5.17.0",
                "torch": "2.13.0",
            },
            "metrics": {"wall_seconds": 193.0, "source_bytes": 16_000_000_000, "artifact_bytes": 5_300_000_000},
        }
        manifest.update(self.faults.manifest_overrides)
        s3 = boto3.client("s3", region_name=REGION)
        model_dir = f"{prefix}/{name}/output/model"
        s3.put_object(Bucket=bucket, Key=f"{model_dir}/manifest.json", Body=json.dumps(manifest).encode())
        s3.put_object(Bucket=bucket, Key=f"{model_dir}/config.json", Body=b'{"quantization_config": {}}')

    def _after_create_processing_job(self, backend: Any, kwargs: dict[str, Any]) -> None:
        role = self.job_roles.get(kwargs["role_arn"])
        if role is None:
            raise AssertionError(f"the harness knows no policy of the processing job's role {kwargs['role_arn']}")
        job = EvaluateJob(
            role=role,
            gate={"passed": self.faults.gate_passed, "reasons": self.faults.gate_reasons},
            report_padding_bytes=self.faults.report_padding_bytes,
            during_load=self._alarm_during_evaluation if self.faults.alarm_during_evaluation else None,
        )
        failure = job.run(kwargs)
        if failure:
            # Seen when the job ends (sagemaker_world.py): Failed, with the container's message.
            backend.processing_jobs[kwargs["processing_job_name"]]._failure = failure

    def _alarm_during_evaluation(self) -> None:
        """The load test trips a candidate alarm; EventBridge hands it to the rollback function."""
        alarm = self.faults.alarm_during_evaluation
        assert alarm
        boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
            AlarmName=alarm, StateValue="ALARM", StateReason="the evaluation's load test"
        )
        self.pending_alarm = alarm
        self.deliver_pending_alarm()

    def _after_update_endpoint_weights_and_capacities(self, backend: Any, kwargs: dict[str, Any]) -> None:
        weights = {w["VariantName"]: w["DesiredWeight"] for w in kwargs["desired_weights_and_capacities"]}
        if self.faults.alarm_name and weights.get("candidate") == self.faults.alarm_at_candidate_weight:
            self.faults.alarm_at_candidate_weight = None
            boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
                AlarmName=self.faults.alarm_name, StateValue="ALARM", StateReason="injected by the test"
            )
            if self.faults.rollback_function_acts:
                self.pending_alarm = self.faults.alarm_name
        if weights.get("candidate") == self.faults.sample_quality_at_candidate_weight:
            self.faults.sample_quality_at_candidate_weight = None
            sampler = next(f for f in self.functions.values() if f.folder.name == "quality_sampler")
            event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
            self.quality_results.append(self._run_handler(sampler, event))

    # CloudWatch alarm history (not in moto)

    def _describe_alarm_history(self, response: Any) -> Any:
        from datetime import UTC, datetime

        from moto.core.responses import ActionResult

        name = response._get_param("AlarmName")
        kind = response._get_param("HistoryItemType")
        start = response._get_param("StartDate")
        since = datetime.fromisoformat(start.replace("Z", "+00:00")) if isinstance(start, str) else start
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        items = [
            item
            for item in self.alarm_history
            if (name is None or item["AlarmName"] == name)
            and (kind is None or item["HistoryItemType"] == kind)
            and (since is None or item["Timestamp"] >= since)
        ]
        return ActionResult({"AlarmHistoryItems": sorted(items, key=lambda i: i["Timestamp"], reverse=True)})

    # The rollback function, as EventBridge would deliver the injected alarm to it

    def deliver_pending_alarm(self) -> None:
        alarm, self.pending_alarm = self.pending_alarm, None
        rollback = next((f for f in self.functions.values() if f.folder.name == "rollback"), None)
        if alarm is None or rollback is None:
            return
        cw = boto3.client("cloudwatch", region_name=REGION)
        described = cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]
        event = {
            "version": "0",
            "id": "injected-alarm",
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [described["AlarmArn"]],
            "detail": {
                "alarmName": alarm,
                "state": {
                    "value": "ALARM",
                    "reason": "injected by the test",
                    "timestamp": described["StateUpdatedTimestamp"].isoformat(),
                },
                "previousState": {
                    "value": "OK",
                    "reason": "healthy",
                    "timestamp": described["StateUpdatedTimestamp"].isoformat(),
                },
                "configuration": {"metrics": []},
            },
        }
        self.rollback_results.append(self._run_handler(rollback, event))
        # Traffic moved away: the candidate's metrics stop and the alarm goes back to OK.
        cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="no more breaching data")

    def _run_handler(self, function: FunctionUnderTest, event: Any) -> Any:
        with self._env_lock:
            saved = dict(os.environ)
            os.environ.update(function.environment)
            try:
                with acting_as(function.role):
                    return function.module.handler(event, LambdaContext(function_name=function.name))
            finally:
                os.environ.clear()
                os.environ.update(saved)

    # Lambda

    def _invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        function = self.functions[name]
        event = json.loads(body or "null")
        if isinstance(event, dict) and event.get("action") == "canary_check" and self.pending_alarm:
            self.deliver_pending_alarm()
        with self._env_lock:
            saved = dict(os.environ)
            os.environ.update(function.environment)
            try:
                with acting_as(function.role):
                    result = function.module.handler(event, LambdaContext(function_name=name))
                payload = json.dumps(result)
            except Exception as exc:
                response_headers["x-amz-function-error"] = "Unhandled"
                payload = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
            finally:
                os.environ.clear()
                os.environ.update(saved)
        return payload.encode()


def install_string_bodies(monkeypatch: Any) -> None:
    """aws-sdk tasks see a streaming Body (S3 GetObject) as a string, as in Step Functions."""
    monkeypatch.setattr(StateTaskServiceAwsSdkStreams, "_normalise_response", _read_streaming_bodies)


def _read_streaming_bodies(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
    """S3 GetObject through the SDK integration returns Body as a string in Step Functions; moto leaves the stream."""
    if isinstance(response, dict):
        for key, value in list(response.items()):
            if isinstance(value, StreamingBody):
                response[key] = value.read().decode()


def _describe_alarms(self: Any) -> Any:
    """DescribeAlarms applying AlarmNamePrefix and StateValue together, as CloudWatch does (moto uses one)."""
    from moto.core.responses import ActionResult

    prefix = self._get_param("AlarmNamePrefix") or ""
    state = self._get_param("StateValue")
    alarms = [
        alarm
        for alarm in self.cloudwatch_backend.describe_alarms()
        if alarm.name.startswith(prefix) and (state is None or alarm.state_value == state)
    ]
    return ActionResult(
        {
            "MetricAlarms": [a for a in alarms if a.rule is None],
            "CompositeAlarms": [a for a in alarms if a.rule is not None],
        }
    )


def _update_endpoint_response(self: Any) -> Any:
    from moto.core.responses import ActionResult

    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties")),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
    )
    return ActionResult({"EndpointArn": arn})


class _VirtualTime:
    """Stands in for the ``time`` module of moto's retrier: retry intervals advance the virtual clock."""

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline

    def sleep(self, seconds: float) -> None:
        self._timeline.advance(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _history_item(alarm: str, old: str | None, new: str, reason: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    data = {"version": "1.0", "oldState": {"stateValue": old}, "newState": {"stateValue": new, "stateReason": reason}}
    return {
        "AlarmName": alarm,
        "AlarmType": "MetricAlarm",
        "Timestamp": datetime.now(UTC),
        "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from {old} to {new}",
        "HistoryData": json.dumps(data),
    }


# ----- running executions


@dataclass
class Execution:
    arn: str
    status: str
    output: dict[str, Any]
    error: str
    cause: str
    history: list[dict[str, Any]]

    def states_entered(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]

    def task_failures(self) -> list[str]:
        return [e["taskFailedEventDetails"]["error"] for e in self.history if "taskFailedEventDetails" in e]


def oversized_payloads(history: list[dict[str, Any]]) -> list[str]:
    """Events whose input, output or task result is over Step Functions' payload quota (moto checks task
    results only, and lets States.ALL catch the error)."""
    found = []
    for event in history:
        for key, details in event.items():
            if not key.endswith("EventDetails") or not isinstance(details, dict):
                continue
            for part in ("input", "output"):
                size = len(str(details.get(part) or "").encode())
                if size > PAYLOAD_LIMIT_BYTES:
                    found.append(f"event {event.get('id')} {event.get('type')} {part}: {size} bytes")
    return found


def run_execution(sfn: Any, state_machine_arn: str, payload: Any, *, name: str, timeout: float = 90) -> Execution:
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {name} still running after {timeout} s")
        time.sleep(0.05)
    history: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        history += page["events"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    # Step Functions fails a Standard execution at its 25,000th history event; moto does not.
    if len(history) >= HISTORY_LIMIT:
        raise AssertionError(f"execution {name} has {len(history)} history events; AWS would have failed it")
    oversized = oversized_payloads(history)
    if oversized:
        raise AssertionError(f"execution {name}: AWS would have failed it with States.DataLimitExceeded: {oversized}")
    output = json.loads(described["output"]) if described.get("output") else {}
    return Execution(
        arn=arn,
        status=described["status"],
        output=output,
        error=described.get("error", ""),
        cause=described.get("cause", ""),
        history=history,
    )


@contextmanager
def quiet_env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
