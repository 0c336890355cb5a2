"""The sampler's settings (parsed once from the environment) and its boto3 clients."""

from __future__ import annotations

from functools import lru_cache

from aws_clients import aws_client, client_of

from contracts.function_settings import QualitySamplerSettings

Settings = QualitySamplerSettings
# The shared client factory (lambda/shared/aws_clients.py: InvokeEndpoint with a 70 s timeout and
# no retry); tests clear its cache through here.
__all__ = ["AwsClients", "Settings", "aws_client", "load_settings"]


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Parsed once per execution environment; a bad variable fails the first invocation loudly."""
    return Settings.from_environment()


class AwsClients:
    """The services the sampler calls, built lazily from the cached factory."""

    sagemaker = client_of("sagemaker")
    runtime = client_of("sagemaker-runtime")
    s3 = client_of("s3")
    cloudwatch = client_of("cloudwatch")
