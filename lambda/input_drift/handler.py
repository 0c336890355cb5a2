"""Scheduled input-drift check of the monitored endpoints (drift_check.py does the work)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from drift_check import check_endpoint

from contracts.function_settings import InputDriftSettings

logger = Logger()
tracer = Tracer()


@cache
def clients() -> tuple[Any, Any, Any]:
    """boto3 clients, built once per container (tests reset the cache to point them at the emulator)."""
    return boto3.client("sagemaker"), boto3.client("s3"), boto3.client("cloudwatch")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = InputDriftSettings.from_environment()
    sagemaker, s3, cloudwatch = clients()
    now = datetime.now(UTC)
    results, failed = [], []
    for endpoint in settings.monitored_endpoints:
        try:
            result = check_endpoint(
                endpoint,
                sagemaker=sagemaker,
                s3=s3,
                cloudwatch=cloudwatch,
                bucket=settings.artifact_bucket,
                now=now,
                hours=settings.lookback_hours,
                max_files=settings.max_files,
            )
        except ClientError:
            # One endpoint's failure must not hide the others' checks; the invocation fails at the end.
            logger.exception("input drift check failed", extra={"endpoint": endpoint})
            failed.append(endpoint)
            continue
        logger.info("input drift", extra={"check": result.as_dict()})
        results.append(result.as_dict())
    if failed:
        raise RuntimeError(f"input drift check failed for {', '.join(failed)} (see the log)")
    return {"checks": results}
