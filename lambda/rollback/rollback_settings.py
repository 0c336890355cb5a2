"""Settings of the rollback function (parsed once from the environment) and its boto3 clients."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

import boto3
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Standard retry mode backs off with jitter on throttling and 5xx; the short
# timeouts keep one slow call from eating the function's whole budget.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)


class Settings(BaseModel):
    """What the stack passes in (stacks/rollback_function.py sets these variables)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET", min_length=3)
    topic_arn: str = Field(alias="ROLLBACK_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:")
    resource_prefix: str = Field(alias="RESOURCE_PREFIX", min_length=1)
    monitored_endpoints: tuple[str, ...] = Field(alias="MONITORED_ENDPOINTS")
    # The serving production variant's own name (StageConfig.serving_variant); its alarms
    # keep the role word "baseline" in their names (<endpoint>-baseline-<signal>).
    baseline_variant: str = Field(default="AllTraffic", alias="BASELINE_VARIANT")
    candidate_variant: str = Field(default="candidate", alias="CANDIDATE_VARIANT")
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
    function_name: str = Field(default="rollback", alias="AWS_LAMBDA_FUNCTION_NAME")

    @field_validator("monitored_endpoints", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls.model_validate(dict(os.environ if environ is None else environ))


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Parsed once per execution environment; a bad variable fails the first invocation loudly."""
    return Settings.from_env()


@cache
def aws_client(service: str) -> Any:
    """One client per service and execution environment.

    Tests call ``aws_client.cache_clear()`` inside the emulator's context so the
    next client is built against it (in-process mock or ``AWS_ENDPOINT_URL``).
    """
    return boto3.client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


class AwsClients:
    """The services the rollback touches, built lazily from the cached factory."""

    @property
    def sagemaker(self) -> Any:
        return aws_client("sagemaker")

    @property
    def s3(self) -> Any:
        return aws_client("s3")

    @property
    def sns(self) -> Any:
        return aws_client("sns")

    @property
    def autoscaling(self) -> Any:
        return aws_client("application-autoscaling")
