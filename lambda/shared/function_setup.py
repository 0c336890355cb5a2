"""What every function sets up once per execution environment: its settings and its boto3 clients.

Settings: the function's model from contracts/function_settings.py, parsed from the environment on
first use (a bad variable fails the first invocation loudly). Clients: one per service, built lazily
(``AwsClients``: the attributes the functions' logic reads).

Standard retry mode backs off with jitter on throttling and 5xx; the short timeouts keep one slow
call from eating a function's whole budget. The SageMaker runtime is the exception: a container has
60 s to answer InvokeEndpoint (its API reference asks for a 70 s socket timeout), and an invocation
is not retried: the caller (the quality sampler) samples again on its next run.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config

from contracts.function_settings import FunctionSettings

if TYPE_CHECKING:
    from functools import _lru_cache_wrapper

SettingsT = TypeVar("SettingsT", bound=FunctionSettings)

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
_RUNTIME_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=70)


@cache
def aws_client(service: str) -> Any:
    """One client per service and execution environment.

    Tests call ``aws_client.cache_clear()`` inside the emulator's context so the
    next client is built against it (in-process mock or ``AWS_ENDPOINT_URL``).
    """
    config = _RUNTIME_CONFIG if service == "sagemaker-runtime" else _CLIENT_CONFIG
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def client_of(service: str) -> property:
    """A read-only attribute: the cached client of ``service``."""
    return property(lambda _clients: aws_client(service))


def settings_loader(model: type[SettingsT]) -> _lru_cache_wrapper[SettingsT]:
    """``model`` parsed from the environment once (tests call ``cache_clear()`` on the loader)."""
    return lru_cache(maxsize=1)(model.from_environment)


class AwsClients:
    """The services the functions call; each client is built on first use, so a function builds
    only those it touches (what it may do is its role's business)."""

    sagemaker = client_of("sagemaker")
    runtime = client_of("sagemaker-runtime")
    s3 = client_of("s3")
    cloudwatch = client_of("cloudwatch")
    sns = client_of("sns")
    autoscaling = client_of("application-autoscaling")
