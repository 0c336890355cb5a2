"""The run plan: what the validate function derives from an execution's input and the state machine reads.

The validate function builds it (lambda/validate_input/run_plan_builder.py ``build_plan``)
and returns it as JSON; the state machine keeps it at ``$.run`` and reads its
fields through JSONPath. ``run_path("s3.gate_key")`` is how the state machine's
code spells such a path: it fails at synth when the field does not exist, so a
renamed or removed field cannot leave a JSONPath that only fails in AWS.

Fields shaped as an AWS API takes them (ResourceConfig, ProductionVariant, ...)
stay plain dicts: the APIs define them, and the conformance tests check them.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict

RUN_ROOT = "$.run"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Names(_Part):
    training_job: str
    evaluate_job: str
    candidate_model: str
    endpoint_config: str
    promoted_config: str
    package_group: str
    alarm_prefix: str
    # Read one by one over each bake (DescribeAlarmHistory takes one name).
    candidate_alarms: list[str]
    scalable_target: str


class Locations(_Part):
    bucket: str
    run_prefix: str
    output_path: str
    # Where SageMaker puts an uncompressed model directory; the state machine replaces it
    # with the job's ModelArtifacts.S3ModelArtifacts.
    artifact_uri: str
    manifest_key: str
    reports_uri: str
    report_key: str
    # The bounded verdict the state machine reads (never report.json: 256 KiB payload quota).
    gate_key: str
    # The serving variant's scaling setup while a promotion has it lifted.
    autoscaling_key: str
    # DataCaptureConfig.DestinationS3Uri of the run's configs (used when the stage captures).
    capture_uri: str
    source_model_uri: str
    calibration_uri: str
    validation_uri: str
    # The evaluate job's inputs: the source model's and the quantized artifact's config.json (full
    # keys: the job reads configs, not weights, and serves nothing itself) and the run's manifest.
    baseline_config_uri: str
    candidate_config_uri: str
    manifest_uri: str


class Images(_Part):
    quantize: str
    evaluate: str
    serving: str


class Instances(_Part):
    quantize: str
    evaluate: str
    serving: str
    serving_count: int
    quantize_volume_gb: int
    # The baseline variant's instance type is known only at run time: the state machine
    # looks its family up here before it adds a KMS key to an endpoint config.
    local_storage_families: list[str]
    serving_local_storage: bool


class Resources(_Part):
    # ResourceConfig / ProcessingClusterConfig as the APIs take them.
    training: dict[str, Any]
    processing: dict[str, Any]


class Variants(_Part):
    serving_name: str
    # ProductionVariant as CreateEndpointConfig takes it.
    candidate: dict[str, Any]
    promoted: dict[str, Any]


class CanaryStep(_Part):
    candidate: int
    baseline: int
    bake_seconds: int
    index: int


class Canary(_Part):
    first: CanaryStep
    # The canary config's candidate variant (ProductionVariant): InitialVariantWeight 0, beside the
    # serving variant copied whole with its own weight, so it serves no user until the bake's first
    # step sets the weights (UpdateEndpointWeightsAndCapacities).
    candidate_at_zero: dict[str, Any]
    steps: list[CanaryStep]


class Timing(_Part):
    job_poll_seconds: int
    endpoint_poll_seconds: int
    quantize_max_seconds: int
    evaluate_max_seconds: int
    quantize_max_polls: int
    evaluate_max_polls: int
    deploy_max_polls: int


class RunPlan(_Part):
    model_name: str
    run_id: str
    algorithm: str
    scheme: str
    group_size: int | None
    baseline_endpoint: str
    names: Names
    s3: Locations
    images: Images
    instances: Instances
    resources: Resources
    variants: Variants
    # The quantize job's hyperparameters, as SageMaker passes them (strings).
    hyperparameters: dict[str, str]
    # The serving container's environment (LMI reads the compressed-tensors config).
    serving_environment: dict[str, str]
    # The evaluate job's own flags.
    evaluate_arguments: list[str]
    canary: Canary
    timing: Timing
    tags: list[dict[str, str]]
    # The stage's require_human_review: promotion does not approve the package; an operator does,
    # after the human review says go (python -m stacks.run_pipeline approve-after-review).
    require_human_review: bool


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or as ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def run_path(dotted: str, root: str = RUN_ROOT) -> str:
    """``$.run.<dotted>`` after checking every part names a field of the plan.

    A path may go one key into a dict-typed field (an API-shaped value) unchecked, and no further
    into anything that is not a model.
    """
    model: type[BaseModel] | None = RunPlan
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        if model is None:
            if index == len(parts) - 1:
                break  # a key inside an API-shaped dict
            raise KeyError(f"run plan path {dotted!r}: {parts[index - 1]!r} holds no fields")
        field = model.model_fields.get(part)
        if field is None:
            raise KeyError(f"run plan path {dotted!r}: {model.__name__} has no field {part!r}")
        model = _model_of(field.annotation)
    return f"{root}.{dotted}"
