"""The sampler's settings (parsed once from the environment) and its boto3 clients."""

from __future__ import annotations

from function_setup import aws_client, client_of, settings_loader

from contracts.function_settings import QualitySamplerSettings

Settings = QualitySamplerSettings
# The shared client factory (lambda/shared/function_setup.py: InvokeEndpoint with a 70 s timeout and
# no retry); tests clear its cache through here.
__all__ = ["AwsClients", "Settings", "aws_client", "load_settings"]


# Parsed once per execution environment (lambda/shared/function_setup.py).
load_settings = settings_loader(Settings)


class AwsClients:
    """The services the sampler calls, built lazily from the cached factory."""

    sagemaker = client_of("sagemaker")
    runtime = client_of("sagemaker-runtime")
    s3 = client_of("s3")
    cloudwatch = client_of("cloudwatch")
