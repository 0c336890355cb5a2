"""Quality sampler: an EventBridge schedule -> sampler_logic.sample_all -> LLMQ/Quality metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from function_setup import AwsClients, settings_loader
from sampler_logic import sample_all

from contracts.function_settings import QualitySamplerSettings

# Parsed once per execution environment (lambda/shared/function_setup.py).
load_settings = settings_loader(QualitySamplerSettings)
logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = sample_all(
        load_settings(),
        AwsClients(),
        seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    for endpoint, result in results.items():
        level = "warning" if result["outcome"] in ("failed", "not-sampled") else "info"
        getattr(logger, level)("quality sample", extra={"endpoint": endpoint, **result})
    return {"endpoints": results}
