"""The validate function (lambda/validate_input/): turns an execution input into the run plan.

It calls no AWS API: its role holds only what every ``PythonFunction`` has. Its
environment is the deployment's side of the plan (lambda/validate_input/run_spec.py
reads it): prefix, bucket, allowed source buckets, monitored endpoints, instance types,
image URIs, key, serving variant, minimum bake time, rollback signals, written with the
function's own settings model (contracts/function_settings.py ``ValidateSettings``).

A ``PythonFunction`` itself rather than a construct holding one: the stack creates it
with the id it always had (``ValidateInput``), so the function, role and log group keep
their construct paths, hence their logical ids (tests/infra/test_resource_identity.py).
"""

from __future__ import annotations

from constructs import Construct

from contracts.alarm_signals import ROLLBACK_SIGNALS
from contracts.function_settings import ValidateSettings
from stacks.python_function import PythonFunction
from stacks.shared_resources import SharedResources


class ValidateInputFunction(PythonFunction):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        shared: SharedResources,
        *,
        quantize_image: str,
        evaluate_image: str,
        serving_image: str,
    ) -> None:
        config = shared.config
        super().__init__(
            scope,
            construct_id,
            name="validate_input",
            description="Validates a pipeline execution input and returns the run plan",
            environment=ValidateSettings.environment(
                resource_prefix=shared.prefix,
                artifact_bucket=shared.bucket.bucket_name,
                allowed_buckets=config.pipeline.allowed_source_buckets,
                monitored_endpoints=config.monitored_endpoints,
                quantize_instance_type=config.instances.quantize,
                evaluate_instance_type=config.instances.evaluate,
                serving_instance_type=config.instances.serving,
                quantize_image_uri=quantize_image,
                evaluate_image_uri=evaluate_image,
                serving_image_uri=serving_image,
                kms_key_arn=shared.key.key_arn,
                serving_variant=config.serving_variant,
                min_bake_minutes=config.monitoring.min_bake_minutes,
                rollback_signals=ROLLBACK_SIGNALS,
                require_human_review=config.pipeline.require_human_review,
            ),
            **shared.function_options(),
        )
