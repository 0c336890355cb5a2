"""The rollback function's settings (parsed once from the environment) and its boto3 clients."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import boto3
from botocore.config import Config

from contracts.function_settings import RollbackSettings

# Standard retry mode backs off with jitter on throttling and 5xx; the short
# timeouts keep one slow call from eating the function's whole budget.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)


# The model lives in contracts/function_settings.py: the stack writes the environment with it.
Settings = RollbackSettings


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Parsed once per execution environment; a bad variable fails the first invocation loudly."""
    return Settings.from_environment()


@cache
def aws_client(service: str) -> Any:
    """One client per service and execution environment.

    Tests call ``aws_client.cache_clear()`` inside the emulator's context so the
    next client is built against it (in-process mock or ``AWS_ENDPOINT_URL``).
    """
    return boto3.client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def _client_of(service: str) -> property:
    """A read-only attribute: the cached client of ``service``."""
    return property(lambda _clients: aws_client(service))


class AwsClients:
    """The services the rollback touches, built lazily from the cached factory."""

    sagemaker = _client_of("sagemaker")
    s3 = _client_of("s3")
    sns = _client_of("sns")
    autoscaling = _client_of("application-autoscaling")
