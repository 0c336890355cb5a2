"""The execution input of the per-model pipeline: its model, its validation, every problem at once.

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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from quantize_sizing import estimate, instance_problem
from run_plan_builder import build_plan
from serving_ami import inference_ami

from contracts.function_settings import ValidateSettings
from contracts.serving_hardware import serving_problem
from contracts.support_table import (
    GROUPED_SCHEMES,
    KERNEL_GROUP_SIZES,
    KNOWN_INSTANCE_FAMILIES,
    SCHEMES_BY_ALGORITHM,
    sizing_algorithm,
)

# The support table and the known instance families live in contracts/support_table.py,
# which the quantize job and the stage config read too.
SUPPORTED_PAIRS = SCHEMES_BY_ALGORITHM
GROUP_SIZES = KERNEL_GROUP_SIZES
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
Recipe = Literal["fixed", "auto"]
Scheme = Literal["W4A16", "W4A16_ASYM", "W8A16", "W8A8", "FP8_DYNAMIC", "W3A16"]


# What the deployment supplies (the validate function's environment), defined with the stack's side.
Defaults = ValidateSettings


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
    # fixed: the algorithm given; auto: the quantize job searches candidate recipes for the
    # scheme within search_budget_minutes (docs/quantize.md "Automatic recipe").
    recipe: Recipe = "fixed"
    algorithm: Algorithm | None = None
    search_budget_minutes: int = Field(default=60, ge=1, le=24 * 60)
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
    # Serve a scheme whose fast kernel the serving GPU lacks (contracts/serving_hardware.py).
    allow_slow_serving_kernel: bool = False
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
        problems = recipe_problems(self.recipe, self.algorithm, self.search_budget_minutes, self.timing)
        problems += pair_problems(self.algorithm, self.scheme, self.group_size)
        if problems:
            raise ValueError(_JOIN.join(problems))
        return self

    @property
    def sizing_algorithm(self) -> str:
        """The algorithm the sizing rule assumes: the one given, or the most demanding the search may run."""
        return self.algorithm or sizing_algorithm(self.scheme)


def recipe_problems(recipe: Any, algorithm: Any, budget_minutes: int, timing: Timing) -> list[str]:
    """The algorithm is given with recipe fixed and left to the search with recipe auto, whose
    budget must end within the quantize job's time limit."""
    if recipe == "auto":
        problems = []
        if algorithm is not None:
            problems.append("algorithm: leave it out with recipe auto (the search picks it; the manifest records it)")
        if budget_minutes >= timing.quantize_max_hours * 60:
            problems.append(
                f"search_budget_minutes: {budget_minutes} leaves no time within timing.quantize_max_hours "
                f"({timing.quantize_max_hours:g} h) to load and save the model"
            )
        return problems
    return [] if algorithm is not None else ["algorithm: required with recipe fixed (or set recipe: auto)"]


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
        spec.sizing_algorithm,
        samples=spec.num_calibration_samples,
        max_seq_length=spec.max_seq_length,
        weight_bits=8 if spec.scheme.startswith(("W8", "FP8")) else 4,
        single_process=spec.recipe == "auto",
    )
    too_small = instance_problem(quantize_instance, needs)
    if too_small:
        problems.append(Problem(field="quantize_instance_type", message=too_small))
    serving_instance = spec.serving_instance_type or defaults.serving_instance_type
    slow = serving_problem(spec.scheme, serving_instance, allow_slow=spec.allow_slow_serving_kernel)
    if slow:
        problems.append(Problem(field="serving_instance_type", message=slow))
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
