"""The execution input of the per-model pipeline and the run plan derived from it.

Pure logic: the validate Lambda (handler.py) and the command-line tool
(stacks/run_pipeline.py, which imports this file by path) share it, so a spec is
judged the same way on a laptop and in the state machine. Every problem is
reported at once, each with the name of its field.

The plan holds every name and URI the state machine uses, derived from
``run_id``: running the same input twice addresses the same resources.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from itertools import pairwise
from typing import Any, Literal

from history_budget import ENDPOINT_POLL_EVENTS, JOB_POLL_EVENTS, endpoint_waits, max_polls, poll_interval
from instance_storage import LOCAL_STORAGE_FAMILIES, has_local_storage, volume_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from quantize_sizing import estimate, instance_problem
from serving_ami import inference_ami

# Algorithm x scheme pairs, grouped schemes and group sizes: a copy of the quantize
# job's table (jobs/quantize/support.py SUPPORTED, SCHEME_INFO, KERNEL_GROUP_SIZES).
# The function's asset is this folder only, so it cannot import jobs/;
# tests/unit/test_run_spec_model.py fails as soon as the copy and the source differ.
SUPPORTED_PAIRS: dict[str, frozenset[str]] = {
    "awq": frozenset({"W4A16", "W4A16_ASYM", "W8A16", "W3A16"}),
    "gptq": frozenset({"W4A16", "W4A16_ASYM", "W8A16", "W8A8", "W3A16"}),
    "smoothquant-gptq": frozenset({"W8A8"}),
    "rtn": frozenset({"W4A16", "W4A16_ASYM", "W8A16", "W8A8", "FP8_DYNAMIC", "W3A16"}),
}
# Schemes whose weights are quantized per group; the others are per channel.
GROUPED_SCHEMES = frozenset({"W4A16", "W4A16_ASYM", "W8A16", "W3A16"})
# Group sizes vLLM's weight-only GPU kernels accept.
GROUP_SIZES = (128, 64, 32)
# Mirrors stacks/config.py KNOWN_INSTANCE_FAMILIES (a unit test keeps them equal).
KNOWN_INSTANCE_FAMILIES = frozenset(
    {
        "c5", "c6i", "c7i", "m5", "m6i", "m7i", "r5", "r6i", "r7i",
        "g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5", "p5e", "p5en",
        "inf2", "trn1",
    }
)  # fmt: skip
SAGEMAKER_NAME_MAX = 63
# LLM containers load tens of GB of weights before /ping answers: the longest
# waits SageMaker allows (ProductionVariant: 60-3600 s each, docs/aws-behaviour.md).
CANDIDATE_STARTUP_TIMEOUT_SECONDS = 3600
CANDIDATE_DOWNLOAD_TIMEOUT_SECONDS = 3600
CANDIDATE_VARIANT = "candidate"
MODEL_NAME_MAX = 32
RUN_ID_MAX = 20
_NAME = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>\S+)$")
_ECR_IMAGE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]*(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})$"
)
# Joins cross-field problems inside one pydantic error; split again per field.
_JOIN = "\n"
_INSTANCE_TYPE = re.compile(r"^ml\.(?P<family>[a-z0-9]+)\.(?P<size>[a-z0-9]+)$")

Algorithm = Literal["awq", "gptq", "smoothquant-gptq", "rtn"]
Scheme = Literal["W4A16", "W4A16_ASYM", "W8A16", "W8A8", "FP8_DYNAMIC", "W3A16"]


class Defaults(BaseModel):
    """What the deployment supplies (the validate Lambda's environment)."""

    model_config = ConfigDict(frozen=True)

    resource_prefix: str
    artifact_bucket: str
    allowed_buckets: tuple[str, ...] = ()
    monitored_endpoints: tuple[str, ...]
    quantize_instance_type: str
    evaluate_instance_type: str
    serving_instance_type: str
    quantize_image_uri: str
    evaluate_image_uri: str
    serving_image_uri: str
    # The project KMS key: S3 outputs always, job volumes and endpoint configs where allowed.
    kms_key_arn: str
    # The monitored endpoints' serving variant (StageConfig.serving_variant).
    serving_variant: str = "AllTraffic"
    # Shortest bake the alarms can judge: their evaluation window plus CloudWatch's
    # 1-2 minutes of metric delay (set from the monitoring thresholds by the stack).
    min_bake_minutes: int = 7
    # Signals whose candidate alarms roll back (stacks/endpoint_monitoring.py ROLLBACK_SIGNALS);
    # the bake reads <endpoint>-candidate-<signal> for each.
    rollback_signals: tuple[str, ...] = ("latency-p95-vs-baseline", "5xx", "4xx", "quality")

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Defaults:
        """The validate function's environment variables (set by stacks/pipeline_stack.py)."""
        return cls(
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
            kms_key_arn=env["KMS_KEY_ARN"],
            serving_variant=env.get("SERVING_VARIANT", "AllTraffic"),
            min_bake_minutes=int(env.get("MIN_BAKE_MINUTES", "7")),
            rollback_signals=tuple(json.loads(env["ROLLBACK_SIGNALS"])),
        )


def _check_instance_type(value: str) -> str:
    match = _INSTANCE_TYPE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a SageMaker instance type (ml.<family>.<size>)")
    if match["family"] not in KNOWN_INSTANCE_FAMILIES:
        raise ValueError(f"unknown instance family {match['family']!r}")
    return value


def _check_s3_uri(value: str) -> str:
    if not _S3_URI.match(value):
        raise ValueError(f"{value!r} is not an s3://bucket/key URI")
    if not value.endswith("/"):
        # SageMaker reads S3Prefix channels by key prefix: ".../llama-8b" also matches
        # ".../llama-8b-old/" and would mix two models or data sets.
        raise ValueError(f"{value!r} must end with '/': an S3 prefix without it also matches sibling keys")
    return value


class CanaryStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: int = Field(ge=1, le=100, description="candidate share of traffic, percent")
    bake_minutes: int = Field(ge=0, le=24 * 60, description="time at this weight before the alarms are read")


class Gate(BaseModel):
    """Thresholds the evaluate job applies (its report's gate.passed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_perplexity_increase_pct: float = Field(default=5.0, gt=0, le=100)
    max_p95_latency_increase_pct: float = Field(default=20.0, gt=0, le=1000)
    min_throughput_ratio: float = Field(default=1.0, gt=0, le=100)


class Timing(BaseModel):
    """Polling and time limits; tests set poll_seconds to 0 so that Wait states do not sleep."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_seconds: int = Field(default=60, ge=0, le=3600)
    quantize_max_hours: float = Field(default=8.0, gt=0, le=120)
    evaluate_max_hours: float = Field(default=4.0, gt=0, le=48)
    deploy_max_minutes: int = Field(default=60, ge=1, le=720)


class RunSpec(BaseModel):
    """The execution input: one model, one scheme, one canary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str = Field(description="lowercase letters, digits and single '-'; part of every resource name")
    run_id: str | None = Field(default=None, description="derived from the spec's content when absent")
    source_model_uri: str
    # Sizes the quantize job (quantize_sizing.py): an instance that cannot hold
    # the model is refused here, before any job starts.
    model_parameters_billion: float = Field(gt=0, le=2000, description="source model size, e.g. 8.03")
    calibration_uri: str
    validation_uri: str
    algorithm: Algorithm
    scheme: Scheme
    group_size: int | None = None
    # 128 x 2048 tokens: the job's default and the calibration the sizing rule was measured with.
    num_calibration_samples: int = Field(default=128, ge=1, le=4096)
    max_seq_length: int = Field(default=2048, ge=64, le=32768)
    seed: int = Field(default=0, ge=0)
    ignore: tuple[str, ...] = ("lm_head",)
    quantize_instance_type: str | None = None
    evaluate_instance_type: str | None = None
    serving_instance_type: str | None = None
    serving_instance_count: int = Field(default=1, ge=1, le=10)
    quantize_image_uri: str | None = None
    evaluate_image_uri: str | None = None
    serving_image_uri: str | None = None
    baseline_endpoint: str
    canary: tuple[CanaryStep, ...] = Field(min_length=1, max_length=10)
    gate: Gate = Gate()
    timing: Timing = Timing()

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not _NAME.match(value) or len(value) > MODEL_NAME_MAX:
            raise ValueError(
                f"must be 1-{MODEL_NAME_MAX} lowercase letters/digits with single '-' between them "
                "(it becomes part of SageMaker resource names)"
            )
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and (not _NAME.match(value) or len(value) > RUN_ID_MAX):
            raise ValueError(f"must be 1-{RUN_ID_MAX} lowercase letters/digits with single '-' between them")
        return value

    @field_validator("source_model_uri", "calibration_uri", "validation_uri")
    @classmethod
    def _s3(cls, value: str) -> str:
        return _check_s3_uri(value)

    @field_validator("quantize_instance_type", "evaluate_instance_type", "serving_instance_type")
    @classmethod
    def _instance(cls, value: str | None) -> str | None:
        return None if value is None else _check_instance_type(value)

    @field_validator("quantize_image_uri", "evaluate_image_uri", "serving_image_uri")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _ECR_IMAGE.match(value):
            raise ValueError(f"{value!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/repo:tag)")
        return value

    @field_validator("canary")
    @classmethod
    def _canary(cls, value: tuple[CanaryStep, ...]) -> tuple[CanaryStep, ...]:
        weights = [step.weight for step in value]
        if any(b <= a for a, b in pairwise(weights)):
            raise ValueError(f"weights must rise strictly step by step, got {weights}")
        if weights[-1] != 100:
            raise ValueError(f"the last step must be at weight 100 (full traffic), got {weights[-1]}")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> RunSpec:
        problems = pair_problems(self.algorithm, self.scheme, self.group_size)
        if problems:
            raise ValueError(_JOIN.join(problems))
        return self


def pair_problems(algorithm: Any, scheme: Any, group_size: Any) -> list[str]:
    """Cross-field rules on algorithm, scheme and group size, as ``field: message`` strings."""
    problems = []
    if algorithm in SUPPORTED_PAIRS and isinstance(scheme, str) and scheme not in SUPPORTED_PAIRS[algorithm]:
        allowed = ", ".join(sorted(SUPPORTED_PAIRS[algorithm]))
        problems.append(f"scheme: {algorithm} does not support {scheme} (it supports {allowed})")
    if scheme in GROUPED_SCHEMES:
        if group_size is not None and group_size not in GROUP_SIZES:
            problems.append(f"group_size: must be one of {list(GROUP_SIZES)} for {scheme}")
    elif isinstance(scheme, str) and group_size is not None:
        problems.append(f"group_size: {scheme} quantizes per channel, leave group_size out")
    return problems


class Problem(BaseModel):
    field: str
    message: str


class ValidationOutcome(BaseModel):
    valid: bool
    problems: list[Problem]
    message: str
    run: dict[str, Any] | None = None


def derive_run_id(raw: Mapping[str, Any]) -> str:
    """A stable id from the spec's content: the same spec maps to the same run (and resources)."""
    canonical = json.dumps({k: v for k, v in raw.items() if k != "run_id"}, sort_keys=True, separators=(",", ":"))
    return "r" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def resource_name(prefix: str, model_name: str, run_id: str, suffix: str = "") -> str:
    """``<prefix>-<model>-<run_id>[-suffix]`` within SageMaker's 63 characters (hashed when longer)."""
    tail = f"-{suffix}" if suffix else ""
    base = f"{prefix}-{model_name}-{run_id}"
    if len(base) + len(tail) <= SAGEMAKER_NAME_MAX:
        return base + tail
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    head = base[: SAGEMAKER_NAME_MAX - len(tail) - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}{tail}"


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def _split_model_errors(message: str) -> list[Problem]:
    problems = []
    for part in message.split(_JOIN):
        field, sep, rest = part.partition(": ")
        problems.append(Problem(field=field, message=rest) if sep else Problem(field="<root>", message=part))
    return problems


def _problems(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            problems += _split_model_errors(message)
        else:
            problems.append(Problem(field=_field_name(item["loc"]), message=message))
    return problems


def _deployment_problems(spec: RunSpec, defaults: Defaults) -> list[Problem]:
    problems = []
    buckets = {defaults.artifact_bucket, *defaults.allowed_buckets}
    for field in ("source_model_uri", "calibration_uri", "validation_uri"):
        match = _S3_URI.match(getattr(spec, field))
        if match and match["bucket"] not in buckets:
            problems.append(
                Problem(field=field, message=f"bucket {match['bucket']!r} is neither the artifact bucket nor allowed")
            )
    quantize_instance = spec.quantize_instance_type or defaults.quantize_instance_type
    needs = estimate(
        spec.model_parameters_billion,
        spec.algorithm,
        samples=spec.num_calibration_samples,
        max_seq_length=spec.max_seq_length,
        weight_bits=8 if spec.scheme.startswith(("W8", "FP8")) else 4,
    )
    too_small = instance_problem(quantize_instance, needs)
    if too_small:
        problems.append(Problem(field="quantize_instance_type", message=too_small))
    short = [step.bake_minutes for step in spec.canary if step.bake_minutes < defaults.min_bake_minutes]
    if short:
        problems.append(Problem(field="canary", message=_bake_message(defaults)))
    try:
        inference_ami(
            spec.serving_image_uri or defaults.serving_image_uri,
            spec.serving_instance_type or defaults.serving_instance_type,
        )
    except ValueError as exc:
        problems.append(Problem(field="serving_image_uri", message=str(exc)))
    if spec.baseline_endpoint not in defaults.monitored_endpoints:
        known = ", ".join(defaults.monitored_endpoints) or "none"
        problems.append(
            Problem(
                field="baseline_endpoint",
                message=f"{spec.baseline_endpoint!r} is not a monitored endpoint (no alarm would guard the canary); "
                f"monitored: {known}",
            )
        )
    return problems


def validate_spec(raw: Any, defaults: Defaults) -> ValidationOutcome:
    """Judge ``raw`` against the model and the deployment; on success return the run plan."""
    if not isinstance(raw, Mapping):
        problems = [Problem(field="<root>", message="the execution input must be a JSON object")]
        return ValidationOutcome(valid=False, problems=problems, message=_message(problems))
    try:
        spec = RunSpec.model_validate(raw)
    except ValidationError as exc:
        problems = _problems(exc)
        # Cross-field and deployment checks still run on the fields that are well-formed.
        bad = {p.field for p in problems}
        if not bad & {"algorithm", "scheme", "group_size", "<root>"}:
            for text in pair_problems(raw.get("algorithm"), raw.get("scheme"), raw.get("group_size")):
                problems += _split_model_errors(text)
        problems += _partial_deployment_problems(raw, defaults, bad)
        return ValidationOutcome(valid=False, problems=problems, message=_message(problems))
    problems = _deployment_problems(spec, defaults)
    if problems:
        return ValidationOutcome(valid=False, problems=problems, message=_message(problems))
    run_id = spec.run_id or derive_run_id(raw)
    return ValidationOutcome(valid=True, problems=[], message="valid", run=build_plan(spec, run_id, defaults))


def _partial_deployment_problems(raw: Mapping[str, Any], defaults: Defaults, bad: set[str]) -> list[Problem]:
    problems = []
    buckets = {defaults.artifact_bucket, *defaults.allowed_buckets}
    for field in ("source_model_uri", "calibration_uri", "validation_uri"):
        match = _S3_URI.match(str(raw.get(field, ""))) if field not in bad else None
        if match and match["bucket"] not in buckets:
            problems.append(
                Problem(field=field, message=f"bucket {match['bucket']!r} is neither the artifact bucket nor allowed")
            )
    endpoint = raw.get("baseline_endpoint")
    if isinstance(endpoint, str) and "baseline_endpoint" not in bad and endpoint not in defaults.monitored_endpoints:
        problems.append(Problem(field="baseline_endpoint", message=f"{endpoint!r} is not a monitored endpoint"))
    return problems


def _bake_message(defaults: Defaults) -> str:
    return (
        f"every bake_minutes must be at least {defaults.min_bake_minutes}: the alarms judge a window of "
        "minutes and CloudWatch publishes with 1-2 minutes of delay, so a shorter bake checks nothing"
    )


def _message(problems: list[Problem]) -> str:
    return f"{len(problems)} problem(s) in the execution input: " + "; ".join(
        f"{p.field}: {p.message}" for p in problems
    )


def bounded_name(name: str, limit: int = SAGEMAKER_NAME_MAX) -> str:
    """``name`` if it fits ``limit`` characters, else its head and a hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-')}-{digest}"


def _timing(spec: RunSpec) -> dict[str, Any]:
    """Poll intervals and bounds that keep the worst case under the history limit (history_budget.py)."""
    timing = spec.timing
    quantize_seconds = int(timing.quantize_max_hours * 3600)
    evaluate_seconds = int(timing.evaluate_max_hours * 3600)
    deploy_seconds = timing.deploy_max_minutes * 60
    requested = max(timing.poll_seconds, 1)
    job_poll = poll_interval(requested, quantize_seconds + evaluate_seconds, 1, JOB_POLL_EVENTS)
    endpoint_poll = poll_interval(requested, deploy_seconds, endpoint_waits(len(spec.canary)), ENDPOINT_POLL_EVENTS)
    return {
        # Wait states read these; 0 only in tests (the spec's poll_seconds: 0).
        "job_poll_seconds": job_poll if timing.poll_seconds else 0,
        "endpoint_poll_seconds": endpoint_poll if timing.poll_seconds else 0,
        "quantize_max_seconds": quantize_seconds,
        "evaluate_max_seconds": evaluate_seconds,
        # The Describe/Wait loops give up a little after the job's own limit.
        "quantize_max_polls": max_polls(quantize_seconds, job_poll) + 10,
        "evaluate_max_polls": max_polls(evaluate_seconds, job_poll) + 10,
        "deploy_max_polls": max_polls(deploy_seconds, endpoint_poll),
    }


def _variants(spec: RunSpec, defaults: Defaults, model: str, image: str) -> dict[str, Any]:
    """The candidate's production variant (canary: "candidate"; promoted: the serving variant's name)."""
    instance_type = spec.serving_instance_type or defaults.serving_instance_type
    candidate: dict[str, Any] = {
        "VariantName": CANDIDATE_VARIANT,
        "ModelName": model,
        "InstanceType": instance_type,
        "InitialInstanceCount": spec.serving_instance_count,
        "ContainerStartupHealthCheckTimeoutInSeconds": CANDIDATE_STARTUP_TIMEOUT_SECONDS,
        "ModelDataDownloadTimeoutInSeconds": CANDIDATE_DOWNLOAD_TIMEOUT_SECONDS,
    }
    ami = inference_ami(image, instance_type)
    if ami:
        candidate["InferenceAmiVersion"] = ami
    promoted = {**candidate, "VariantName": defaults.serving_variant, "InitialVariantWeight": 1}
    return {"serving_name": defaults.serving_variant, "candidate": candidate, "promoted": promoted}


def build_plan(spec: RunSpec, run_id: str, defaults: Defaults) -> dict[str, Any]:
    """Everything the state machine needs, precomputed (names, URIs, images, weights, limits)."""
    prefix = defaults.resource_prefix
    bucket = defaults.artifact_bucket
    name = spec.model_name
    run_key = f"models/{name}/{run_id}/"
    training_job = resource_name(prefix, name, run_id, "q")
    candidate_model = resource_name(prefix, name, run_id, "candidate")
    group_size = spec.group_size or (128 if spec.scheme in GROUPED_SCHEMES else None)
    hyperparameters = {
        "algorithm": spec.algorithm,
        "scheme": spec.scheme,
        "num-calibration-samples": str(spec.num_calibration_samples),
        "max-seq-length": str(spec.max_seq_length),
        "seed": str(spec.seed),
        "ignore": ",".join(spec.ignore),
    }
    if group_size is not None:
        hyperparameters["group-size"] = str(group_size)
    images = {
        "quantize": spec.quantize_image_uri or defaults.quantize_image_uri,
        "evaluate": spec.evaluate_image_uri or defaults.evaluate_image_uri,
        "serving": spec.serving_image_uri or defaults.serving_image_uri,
    }
    variants = _variants(spec, defaults, candidate_model, images["serving"])
    steps = [
        {
            "candidate": step.weight,
            "baseline": 100 - step.weight,
            "bake_seconds": step.bake_minutes * 60,
            "index": index + 1,
        }
        for index, step in enumerate(spec.canary)
    ]
    first = steps[0]
    quantize_instance = spec.quantize_instance_type or defaults.quantize_instance_type
    evaluate_instance = spec.evaluate_instance_type or defaults.evaluate_instance_type
    serving_instance = spec.serving_instance_type or defaults.serving_instance_type
    key = defaults.kms_key_arn
    # The source, the staged artifact and room for the container (quantize_sizing.py).
    quantize_volume_gb = max(
        50,
        estimate(
            spec.model_parameters_billion,
            spec.algorithm,
            samples=spec.num_calibration_samples,
            max_seq_length=spec.max_seq_length,
        ).disk_gib,
    )
    gate = spec.gate
    alarm_prefix = f"{spec.baseline_endpoint}-candidate-"
    return {
        "model_name": name,
        "run_id": run_id,
        "algorithm": spec.algorithm,
        "scheme": spec.scheme,
        "group_size": group_size,
        "baseline_endpoint": spec.baseline_endpoint,
        "names": {
            "training_job": training_job,
            "evaluate_job": resource_name(prefix, name, run_id, "e"),
            "candidate_model": candidate_model,
            "endpoint_config": resource_name(prefix, name, run_id),
            "promoted_config": resource_name(prefix, name, run_id, "promoted"),
            "package_group": bounded_name(f"{prefix}-{name}"),
            "alarm_prefix": alarm_prefix,
            # Read one by one over each bake (DescribeAlarmHistory takes one name).
            "candidate_alarms": [f"{alarm_prefix}{signal}" for signal in defaults.rollback_signals],
            "scalable_target": f"endpoint/{spec.baseline_endpoint}/variant/{defaults.serving_variant}",
        },
        "s3": {
            "bucket": bucket,
            "run_prefix": f"s3://{bucket}/{run_key}",
            "output_path": f"s3://{bucket}/{run_key}",
            # Where SageMaker puts an uncompressed model directory (<output>/<job>/output/model/);
            # the state machine replaces it with the job's ModelArtifacts.S3ModelArtifacts.
            "artifact_uri": f"s3://{bucket}/{run_key}{training_job}/output/model/",
            "manifest_key": f"{run_key}manifest.json",
            "reports_uri": f"s3://{bucket}/{run_key}reports/",
            "report_key": f"{run_key}reports/report.json",
            # The bounded verdict the state machine reads (jobs/evaluate/gate.py GATE_FILE).
            "gate_key": f"{run_key}reports/gate.json",
            "source_model_uri": spec.source_model_uri,
            "calibration_uri": spec.calibration_uri,
            "validation_uri": spec.validation_uri,
        },
        "images": images,
        "instances": {
            "quantize": quantize_instance,
            "evaluate": evaluate_instance,
            "serving": serving_instance,
            "serving_count": spec.serving_instance_count,
            "quantize_volume_gb": quantize_volume_gb,
            # The baseline variant's instance type is known only at run time: the state
            # machine looks its family up here before it adds the KMS key to a config.
            "local_storage_families": sorted(LOCAL_STORAGE_FAMILIES),
            "serving_local_storage": has_local_storage(serving_instance),
        },
        # ResourceConfig / ClusterConfig as the APIs take them: a volume key only where
        # the instance has no NVMe instance storage (instance_storage.py).
        "resources": {
            "training": {
                "InstanceType": quantize_instance,
                "InstanceCount": 1,
                "VolumeSizeInGB": quantize_volume_gb,
                **volume_key(quantize_instance, key),
            },
            "processing": {
                "InstanceType": evaluate_instance,
                "InstanceCount": 1,
                "VolumeSizeInGB": 200,
                **volume_key(evaluate_instance, key),
            },
        },
        "variants": variants,
        "hyperparameters": hyperparameters,
        # LMI (vLLM engine) reads the compressed-tensors config from the model directory.
        "serving_environment": {
            "HF_MODEL_ID": "/opt/ml/model",
            "OPTION_ROLLING_BATCH": "vllm",
            "OPTION_TENSOR_PARALLEL_DEGREE": "max",
            "OPTION_MAX_MODEL_LEN": str(spec.max_seq_length),
        },
        # The evaluate job's own flags (jobs/evaluate/job.py; tests/jobs/evaluate/test_pipeline_contract.py parses them
        # with its parser). Offline, no server: fidelity is measured and gated; speed is
        # stated as not measured and judged live by the canary's alarms.
        "evaluate_arguments": [
            "--baseline-dir",
            "/opt/ml/processing/input/baseline",
            "--candidate-dir",
            "/opt/ml/processing/input/candidate",
            "--validation",
            "/opt/ml/processing/input/validation",
            "--output-dir",
            "/opt/ml/processing/output",
            "--failure-dir",
            "/opt/ml/output",
            "--max-ppl-increase-pct",
            str(gate.max_perplexity_increase_pct),
            "--max-p95-latency-ratio",
            str(round(1 + gate.max_p95_latency_increase_pct / 100, 4)),
            "--min-throughput-ratio",
            str(gate.min_throughput_ratio),
        ],
        "canary": {
            "first": first,
            # The first canary config's variants: the serving variant copied whole with
            # this weight merged in, and the candidate.
            "first_serving_weight": {"InitialVariantWeight": first["baseline"]},
            "first_candidate": {**variants["candidate"], "InitialVariantWeight": first["candidate"]},
            "steps": steps,
        },
        "timing": _timing(spec),
        "tags": [
            {"Key": "llmq:model-name", "Value": name},
            {"Key": "llmq:run-id", "Value": run_id},
        ],
    }
