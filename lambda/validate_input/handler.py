"""Validate the execution input and return the run plan (or every problem, each with its field)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from run_spec import Defaults, validate_spec

logger = Logger()
tracer = Tracer()


@cache
def defaults_from_env() -> Defaults:
    """The deployment's defaults, parsed once per container."""
    return Defaults.from_environment(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    outcome = validate_spec(event, defaults_from_env())
    if outcome.valid:
        logger.info("valid input", extra={"run_id": outcome.run and outcome.run["run_id"]})
    else:
        logger.warning("invalid input", extra={"problems": [p.model_dump() for p in outcome.problems]})
    return outcome.model_dump()
