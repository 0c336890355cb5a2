"""Each function's environment: one model the stack writes with and the function parses with.

A field's alias is its environment variable. The stack calls ``environment(...)``
with Python values (CDK tokens included: nothing is validated at synth, the values
may not be resolved yet); the function calls ``from_environment()`` once and gets a
validated, frozen model. Lists travel as JSON arrays, numbers as their decimal text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.alarm_signals import ROLLBACK_SIGNALS
from contracts.endpoint_tags import CANDIDATE_VARIANT, DEFAULT_SERVING_VARIANT


class FunctionSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Variables Lambda reserves and sets in every function itself: a field with one of these aliases
    # is read, never written by the stack (Lambda refuses them in a function's configuration).
    RUNTIME_SET: ClassVar[frozenset[str]] = frozenset({"AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME"})

    @field_validator("*", mode="before")
    @classmethod
    def _json_lists(cls, value: Any, info: Any) -> Any:
        annotation = str(cls.model_fields[info.field_name].annotation)
        if isinstance(value, str) and annotation.startswith("tuple"):
            parsed = json.loads(value) if value.strip() else []
            if not isinstance(parsed, list):
                raise ValueError(f"{info.field_name} must be a JSON array, got {value!r}")
            return tuple(parsed)
        return value

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The function's side: validated once (a bad variable fails the first invocation loudly)."""
        return cls.model_validate(dict(os.environ if environ is None else environ))

    @classmethod
    def environment(cls, **values: Any) -> dict[str, str]:
        """The stack's side: environment variables from field values, not validated (CDK tokens)."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
        reserved = sorted(name for name in values if cls.model_fields[name].alias in cls.RUNTIME_SET)
        if reserved:
            raise TypeError(f"{cls.__name__}: Lambda sets {', '.join(reserved)} itself")
        missing = [
            name
            for name, f in cls.model_fields.items()
            if f.is_required() and name not in values and f.alias not in cls.RUNTIME_SET
        ]
        if missing:
            raise TypeError(f"{cls.__name__} needs {', '.join(missing)}")
        env = {}
        for name, value in values.items():
            alias = cls.model_fields[name].alias or name
            env[alias] = json.dumps(list(value)) if isinstance(value, list | tuple) else str(value)
        return env


class ValidateSettings(FunctionSettings):
    """The validate function: what the deployment supplies to every run plan."""

    resource_prefix: str = Field(alias="RESOURCE_PREFIX")
    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET")
    allowed_buckets: tuple[str, ...] = Field(default=(), alias="ALLOWED_BUCKETS")
    monitored_endpoints: tuple[str, ...] = Field(alias="MONITORED_ENDPOINTS")
    quantize_instance_type: str = Field(alias="QUANTIZE_INSTANCE_TYPE")
    evaluate_instance_type: str = Field(alias="EVALUATE_INSTANCE_TYPE")
    serving_instance_type: str = Field(alias="SERVING_INSTANCE_TYPE")
    quantize_image_uri: str = Field(alias="QUANTIZE_IMAGE_URI")
    evaluate_image_uri: str = Field(alias="EVALUATE_IMAGE_URI")
    serving_image_uri: str = Field(alias="SERVING_IMAGE_URI")
    # The project KMS key: S3 outputs always, job volumes and endpoint configs where allowed.
    kms_key_arn: str = Field(alias="KMS_KEY_ARN")
    # The monitored endpoints' serving variant (StageConfig.serving_variant).
    serving_variant: str = Field(default=DEFAULT_SERVING_VARIANT, alias="SERVING_VARIANT")
    # Shortest bake the alarms can judge: their evaluation window plus CloudWatch's
    # 1-2 minutes of metric delay (set from the monitoring thresholds by the stack).
    min_bake_minutes: int = Field(default=7, alias="MIN_BAKE_MINUTES")
    # Signals whose candidate alarms roll back; the bake reads <endpoint>-candidate-<signal> for each.
    rollback_signals: tuple[str, ...] = Field(default=ROLLBACK_SIGNALS, alias="ROLLBACK_SIGNALS")
    # StageConfig.pipeline.require_human_review: promotion leaves the package PendingManualApproval.
    require_human_review: bool = Field(default=False, alias="REQUIRE_HUMAN_REVIEW")
    # Set by Lambda itself, not by the stack: the evaluate job's --region (the endpoint's region).
    region: str = Field(alias="AWS_REGION", min_length=1)


class RollbackSettings(FunctionSettings):
    """The rollback function (stacks/rollback_function.py sets these variables)."""

    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET", min_length=3)
    topic_arn: str = Field(alias="ROLLBACK_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:")
    resource_prefix: str = Field(alias="RESOURCE_PREFIX", min_length=1)
    monitored_endpoints: tuple[str, ...] = Field(alias="MONITORED_ENDPOINTS")
    # The serving production variant's own name (StageConfig.serving_variant); its alarms
    # keep the role word "baseline" in their names (<endpoint>-baseline-<signal>).
    baseline_variant: str = Field(default=DEFAULT_SERVING_VARIANT, alias="BASELINE_VARIANT")
    candidate_variant: str = Field(default=CANDIDATE_VARIANT, alias="CANDIDATE_VARIANT")
    # How long one invocation waits for EndpointStatus InService (before acting and after),
    # polling every poll_seconds. Less than the function timeout; what is left over is
    # continued by Lambda's retry (the claim is freed for it).
    wait_in_service_seconds: int = Field(default=240, alias="WAIT_IN_SERVICE_SECONDS", ge=0)
    poll_seconds: float = Field(default=5.0, alias="POLL_SECONDS", ge=0)
    # Invocations one rollback may take (the first plus Lambda's async retries): on the
    # last one a restore still Updating is reported rollback-failed instead of raising.
    max_attempts: int = Field(default=3, alias="MAX_ATTEMPTS", ge=1)
    # After promotion, alarms roll back only this long after llmq:promoted-at (0: forever).
    promoted_window_seconds: int = Field(default=86400, alias="PROMOTED_ROLLBACK_WINDOW_SECONDS", ge=0)
    # A claim older than this with no outcome belongs to an invocation that died
    # (timeout, crash): a later invocation may take it over. Longer than the
    # function timeout, so a live invocation is never overtaken.
    lock_stale_seconds: int = Field(default=900, alias="LOCK_STALE_SECONDS", ge=60)
    # Set by Lambda itself, not by the stack.
    function_name: str = Field(default="rollback", alias="AWS_LAMBDA_FUNCTION_NAME")


class QualitySamplerSettings(FunctionSettings):
    """The live-quality sampler (stacks/quality_sampler_function.py sets these variables)."""

    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET", min_length=3)
    monitored_endpoints: tuple[str, ...] = Field(alias="MONITORED_ENDPOINTS")
    serving_variant: str = Field(default=DEFAULT_SERVING_VARIANT, alias="SERVING_VARIANT")
    candidate_variant: str = Field(default=CANDIDATE_VARIANT, alias="CANDIDATE_VARIANT")
    # Prompts per endpoint and run (the first of the evaluation's review prompts), and their output length.
    max_prompts: int = Field(default=8, alias="MAX_PROMPTS", ge=1, le=64)
    max_new_tokens: int = Field(default=64, alias="MAX_NEW_TOKENS", ge=1, le=1024)
    # After promotion the serving variant is sampled this long after llmq:promoted-at (0: never).
    after_promotion_seconds: int = Field(default=86400, alias="SAMPLE_AFTER_PROMOTION_SECONDS", ge=0)
    # An endpoint is not started with less than this left of the invocation (one endpoint's worst case).
    min_seconds_per_endpoint: int = Field(default=60, alias="MIN_SECONDS_PER_ENDPOINT", ge=0)
    # During a canary, this many recent captured prompts join the review prompts (0: none; the stack sets
    # it only for stages that capture), read from at most capture_files of the last hour's files.
    captured_prompts: int = Field(default=0, alias="CAPTURED_PROMPTS", ge=0, le=32)
    capture_files: int = Field(default=20, alias="CAPTURE_FILES", ge=1, le=200)


class InputDriftSettings(FunctionSettings):
    """The input-drift function (stacks/input_drift_monitoring.py sets these variables)."""

    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET", min_length=3)
    monitored_endpoints: tuple[str, ...] = Field(alias="MONITORED_ENDPOINTS")
    # Hours of capture each check reads (StageConfig.data_capture.drift_lookback_hours).
    lookback_hours: int = Field(default=24, alias="LOOKBACK_HOURS", ge=1)
    # Capture files read per endpoint and check, newest hour first (bounds time and memory).
    max_files: int = Field(default=500, alias="MAX_FILES", ge=1)
