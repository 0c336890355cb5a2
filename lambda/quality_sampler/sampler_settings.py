"""The sampler's settings (parsed once from the environment) and its boto3 clients."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import boto3
from botocore.config import Config

from contracts.function_settings import QualitySamplerSettings

# Control-plane and S3 calls: standard retries, short timeouts.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
# InvokeEndpoint: a container has 60 s to answer (InvokeEndpoint API reference, which asks for a 70 s
# socket timeout), and a failed generation is not retried: the next scheduled run samples again, and
# a variant that fails is abandoned for this run so it cannot starve the other endpoints.
_RUNTIME_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=70)

Settings = QualitySamplerSettings


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Parsed once per execution environment; a bad variable fails the first invocation loudly."""
    return Settings.from_environment()


@cache
def aws_client(service: str) -> Any:
    """One client per service and execution environment (tests clear the cache inside moto)."""
    config = _RUNTIME_CONFIG if service == "sagemaker-runtime" else _CLIENT_CONFIG
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def _client_of(service: str) -> property:
    return property(lambda _clients: aws_client(service))


class AwsClients:
    """The services the sampler calls, built lazily from the cached factory."""

    sagemaker = _client_of("sagemaker")
    runtime = _client_of("sagemaker-runtime")
    s3 = _client_of("s3")
    cloudwatch = _client_of("cloudwatch")
