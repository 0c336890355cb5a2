"""boto3 clients of the functions: one per service and execution environment, built lazily.

Standard retry mode backs off with jitter on throttling and 5xx; the short timeouts keep one slow
call from eating a function's whole budget. The SageMaker runtime is the exception: a container has
60 s to answer InvokeEndpoint (its API reference asks for a 70 s socket timeout), and an invocation
is not retried: the caller (the quality sampler) samples again on its next run.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

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
