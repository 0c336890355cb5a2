"""Record step: verify the quantize manifest and register the model package."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from package_record import record

logger = Logger()
tracer = Tracer()


@cache
def clients() -> tuple[Any, Any]:
    """boto3 clients, built once per container (tests reset the cache to point them at the emulator)."""
    return boto3.client("s3"), boto3.client("sagemaker")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s3, sm = clients()
    result = record(event["run"], event.get("execution_id", ""), s3=s3, sm=sm)
    # "created" is a LogRecord attribute: log the result under one key.
    logger.info("model package", extra={"package": result.as_dict()})
    return result.as_dict()
