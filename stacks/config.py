"""The one typed, frozen configuration of a deployment stage.

It is loaded once in app.py from cdk.json context (``-c stage=<name>``) and
passed down to every stack; nothing deeper reads context. Validation happens
here so that a bad stage stops synth before any stack is emitted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.support_table import KNOWN_INSTANCE_FAMILIES

# SageMaker instance families the product knows how to size for. An unknown
# family is far more often a typo (ml.g5x.2xlarge) than a new launch, and a typo
# would only surface as a failed job hours into a run.
# The retention periods CloudWatch Logs accepts (stacks/log_groups.py maps them).
CLOUDWATCH_RETENTION_DAYS = frozenset({1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653})
_INSTANCE_TYPE = re.compile(r"^ml\.(?P<family>[a-z0-9]+)\.(?P<size>[a-z0-9]+)$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
# The optional account and region that pin a stage's stack environment: the form each must have.
_AWS_IDENTIFIERS = {
    "account": (re.compile(r"\d{12}"), "a 12-digit AWS account id"),
    "region": (re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d"), "an AWS region name"),
}


class ConfigError(ValueError):
    """A stage configuration that must not be synthesized; the message names the field."""


def instance_family(instance_type: str) -> str:
    """Return the family of an ``ml.<family>.<size>`` type, or raise ValueError."""
    match = _INSTANCE_TYPE.match(instance_type)
    if not match:
        raise ValueError(f"{instance_type!r} is not a SageMaker instance type (ml.<family>.<size>)")
    family = match["family"]
    if family not in KNOWN_INSTANCE_FAMILIES:
        known = ", ".join(sorted(KNOWN_INSTANCE_FAMILIES))
        raise ValueError(f"unknown instance family {family!r} in {instance_type!r}; known: {known}")
    return family


class InstanceDefaults(BaseModel):
    """Default SageMaker instance types; a run may override them per model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # One A10G (24 GiB) and 64 GiB of host RAM quantizes up to ~8B models with
    # sequential onloading; bigger models name a bigger type per run.
    quantize: str = "ml.g5.4xlarge"
    # The evaluate job is a client of the endpoint the candidate serves on: a CPU instance.
    evaluate: str = "ml.m5.xlarge"
    serving: str = "ml.g5.2xlarge"

    @field_validator("quantize", "evaluate", "serving")
    @classmethod
    def _known_family(cls, value: str) -> str:
        instance_family(value)
        return value


class MonitoringThresholds(BaseModel):
    """Alarm thresholds and timing of the canary alarms (stacks/endpoint_monitoring.py).

    SageMaker publishes endpoint metrics once a minute; CloudWatch evaluates every
    alarm once a minute over its last ``evaluation_periods`` periods and fires when
    ``datapoints_to_alarm`` of them breach. Rates and the latency ratio count only
    periods with at least ``min_invocations`` requests, so a canary at a few percent
    of a quiet endpoint is not judged on a handful of requests.

    The defaults come from benchmarks/alarm_tuning.py (docs/benchmarks.md, "Canary
    alarm tuning"): a 5-minute window sliding by a minute, 1 of 1, ratio 1.4, 5xx 2 %,
    at least 200 requests in the window. They keep false rollbacks below one per 30
    canary-days from 10 to 500 candidate requests a minute and catch a 1.5x latency
    regression within about 5 minutes and 2 % 5xx within about 20 (P95) from 50
    candidate requests a minute; nothing is judged below about 40. Busy endpoints
    can trade reach for speed per stage (docs/monitoring.md). See docs/monitoring.md.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Absolute bound on ModelLatency p95 (whole generation, not first token).
    latency_p95_ms: float = Field(default=10_000, gt=0)
    # Candidate p95 over baseline p95, period by period (metric math).
    latency_p95_ratio: float = Field(default=1.4, gt=1)
    error_5xx_percent: float = Field(default=2.0, gt=0, le=100)
    error_4xx_percent: float = Field(default=5.0, gt=0, le=100)
    min_invocations: int = Field(default=200, ge=1)
    period_seconds: int = Field(default=300, ge=60)
    evaluation_periods: int = Field(default=1, ge=1, le=60)
    datapoints_to_alarm: int = Field(default=1, ge=1, le=60)
    # The quality sampler (lambda/quality_sampler/) publishes the quality metrics twice per
    # quality period while a canary bakes and, after promotion, for quality_sample_after_promotion_minutes.
    quality_max_perplexity_increase_percent: float = Field(default=5.0, gt=0)
    quality_period_seconds: int = Field(default=300, ge=60)
    quality_evaluation_periods: int = Field(default=3, ge=1, le=24)
    quality_datapoints_to_alarm: int = Field(default=2, ge=1, le=24)
    quality_sample_prompts: int = Field(default=8, ge=1, le=64)
    quality_sample_max_new_tokens: int = Field(default=64, ge=1, le=1024)
    quality_sample_after_promotion_minutes: int = Field(default=1440, ge=0)
    # Recent captured prompts the sampler adds during a canary (stages with data_capture on only).
    quality_sample_captured_prompts: int = Field(default=4, ge=0, le=32)

    @field_validator("period_seconds", "quality_period_seconds")
    @classmethod
    def _whole_minutes(cls, value: int) -> int:
        if value % 60:
            raise ValueError("must be a multiple of 60 seconds (SageMaker publishes endpoint metrics per minute)")
        return value

    @property
    def min_bake_minutes(self) -> int:
        """Shortest canary bake the alarms can judge: their window plus 2 minutes of metric delay."""
        window = max(self.evaluation_periods * self.period_seconds, self.quality_period_seconds) // 60
        return window + 2

    @model_validator(mode="after")
    def _datapoints_fit(self) -> MonitoringThresholds:
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError("datapoints_to_alarm must not exceed evaluation_periods")
        if self.quality_datapoints_to_alarm > self.quality_evaluation_periods:
            raise ValueError("quality_datapoints_to_alarm must not exceed quality_evaluation_periods")
        return self


class ImageVersions(BaseModel):
    """Official SageMaker images the pipeline uses by default (stacks/sagemaker_images.py).

    Resolved offline from sagemaker-core's image tables at synth; an execution
    may override each URI. Versions are pinned so that a synth never silently
    moves a stage to another framework release.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Base of containers/quantize and containers/evaluate (PyTorch training DLC).
    training_framework: str = "pytorch"
    training_version: str = "2.10.0"
    training_py_version: str = "py313"
    # LMI (vLLM engine) serves compressed-tensors checkpoints.
    serving_framework: str = "djl-lmi"
    serving_version: str = "0.38.0"


class PipelineSettings(BaseModel):
    """Deployment-wide settings of the per-model pipeline (stacks/pipeline_stack.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    images: ImageVersions = ImageVersions()
    # Build containers/quantize and containers/evaluate as image assets at deploy
    # (stacks/job_images.py) and make them the runs' default images. Off: runs must
    # name quantize_image_uri/evaluate_image_uri (images pushed by your own CI).
    build_job_images: bool = True
    # Buckets besides the artifact bucket that source models and data may come from
    # (the SageMaker execution role may read them).
    allowed_source_buckets: tuple[str, ...] = ()
    # Upper bound of one execution: quantize + evaluate + deployment + every bake.
    execution_timeout_hours: int = Field(default=168, ge=1, le=8760)
    # On: a promoted run's model package stays PendingManualApproval until an operator runs
    # `python -m stacks.run_pipeline approve-after-review` and the human review says go.
    require_human_review: bool = False


class DataCaptureSettings(BaseModel):
    """SageMaker data capture on the configs a run deploys, and the input-drift check that reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Percentage of requests captured (DataCaptureConfig.InitialSamplingPercentage); 0: no capture, no drift check.
    sampling_percentage: int = Field(default=0, ge=0, le=100)
    # How often the drift function runs, and how many past hours of capture each check reads.
    drift_check_hours: int = Field(default=1, ge=1, le=24)
    drift_lookback_hours: int = Field(default=24, ge=1, le=168)

    @property
    def enabled(self) -> bool:
        return self.sampling_percentage > 0


class StageConfig(BaseModel):
    """Everything that differs between stages (dev, prod, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    project: str = "llmq"
    account: str | None = None
    region: str | None = None
    vpc_cidr: str = "10.40.0.0/16"
    max_azs: int = Field(default=2, ge=1, le=4)
    # Off by default: jobs and endpoints reach AWS only through VPC endpoints.
    allow_nat_egress: bool = False
    instances: InstanceDefaults = InstanceDefaults()
    removal_policy: Literal["retain", "destroy"] = "retain"
    # Days before noncurrent artifact versions are deleted: long enough to undo
    # an overwritten manifest, short enough that old weights stop costing money.
    noncurrent_version_days: int = Field(default=90, ge=1, le=3650)
    log_retention_days: int = Field(default=365, ge=1)
    tags: dict[str, str] = Field(default_factory=dict)
    # Endpoints that take canaries: the monitoring stack alarms on each of their
    # variants, and the pipeline refuses a run whose baseline endpoint is not here
    # (no alarm would protect that canary). See docs/contracts.md.
    monitored_endpoints: tuple[str, ...] = ()
    # The production variant that serves users on each monitored endpoint. Its name never
    # changes: a canary adds a variant named "candidate" beside it, and promotion puts the
    # candidate's model into this variant (so an autoscaling target registered on it stays
    # valid and its alarms keep guarding it). "AllTraffic" is the SageMaker SDK's default.
    serving_variant: str = Field(default="AllTraffic", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    # Thresholds of the alarms on those endpoints (the rollback triggers).
    monitoring: MonitoringThresholds = MonitoringThresholds()
    # The per-model pipeline (images, allowed buckets, execution timeout).
    pipeline: PipelineSettings = PipelineSettings()
    # Data capture on the run's endpoint configs and the input-drift check (docs/monitoring.md).
    data_capture: DataCaptureSettings = DataCaptureSettings()

    @field_validator("serving_variant")
    @classmethod
    def _serving_variant_name(cls, value: str) -> str:
        if value == "candidate":
            raise ValueError(
                "'candidate' is the name a canary gives the new variant; name the serving variant otherwise"
            )
        return value

    @field_validator("stage", "project")
    @classmethod
    def _stage_or_project_name(cls, value: str) -> str:
        if not _STAGE_NAME.match(value):
            raise ValueError("must be lowercase letters, digits and '-', starting with a letter, at most 16 characters")
        return value

    @field_validator("account", "region")
    @classmethod
    def _aws_identifier(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern, form = _AWS_IDENTIFIERS[str(info.field_name)]
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {form}")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 CIDR block: {exc}") from None
        if not 16 <= network.prefixlen <= 24:
            raise ValueError(f"{value!r}: the prefix must be between /16 and /24 (a VPC's allowed range)")
        if not network.is_private:
            raise ValueError(f"{value!r} is not a private (RFC 1918) range")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in CLOUDWATCH_RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in sorted(CLOUDWATCH_RETENTION_DAYS))
            raise ValueError(f"{value} is not a CloudWatch retention period; allowed: {allowed}")
        return value

    @field_validator("removal_policy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("monitored_endpoints")
    @classmethod
    def _endpoint_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name):
                raise ValueError(f"{name!r} is not a valid SageMaker endpoint name")
        if len(set(value)) != len(value):
            raise ValueError("endpoint names must be unique")
        return value

    @model_validator(mode="after")
    def _endpoints_carry_prefix(self) -> StageConfig:
        for name in self.monitored_endpoints:
            if not name.startswith(f"{self.resource_prefix}-"):
                raise ValueError(
                    f"monitored_endpoints: {name!r} must start with {self.resource_prefix + '-'!r} "
                    "(IAM scopes endpoint updates on that prefix)"
                )
        return self

    @property
    def resource_prefix(self) -> str:
        """Prefix of every named resource, so IAM can be scoped by name."""
        return f"{self.project}-{self.stage}"


def _describe(error: ValidationError, stage: str) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in item["loc"])
        # Cross-field checks have no location; their message starts with the field.
        lines.append(f"stages.{stage}.{field}: {message}" if field else f"stages.{stage}.{message}")
    return "; ".join(lines)


def load_stage_config(context: Mapping[str, Any], stage: str | None) -> StageConfig:
    """Build the config of ``stage`` from the ``stages`` context of cdk.json.

    Raises ConfigError with every problem, each naming its field.
    """
    stages = context.get("stages")
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError("cdk.json context has no 'stages' mapping")
    name = stage or context.get("defaultStage")
    if not name:
        raise ConfigError(f"no stage given: pass -c stage=<name> (one of: {', '.join(sorted(stages))})")
    if name not in stages:
        raise ConfigError(f"stage: unknown stage {name!r}; known: {', '.join(sorted(stages))}")
    raw = stages[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"stages.{name}: must be a mapping of settings")
    try:
        return StageConfig.model_validate({**raw, "stage": name})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, name)) from None
