"""The validate function (lambda/validate_input/): turns an execution input into the run plan.

It calls no AWS API: its role holds only what every ``PythonFunction`` has. Its
environment is the deployment's side of the plan (lambda/validate_input/run_spec.py
reads it): prefix, bucket, allowed source buckets, monitored endpoints, instance types,
image URIs, key, serving variant, minimum bake time, rollback signals.

A ``PythonFunction`` itself rather than a construct holding one: the stack creates it
with the id it always had (``ValidateInput``), so the function, role and log group keep
their construct paths, hence their logical ids (tests/infra/test_resource_identity.py).
"""

from __future__ import annotations

import json

from constructs import Construct

from stacks.endpoint_monitoring import ROLLBACK_SIGNALS
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
            function_name=f"{shared.prefix}-validate-input",
            description="Validates a pipeline execution input and returns the run plan",
            environment={
                "RESOURCE_PREFIX": shared.prefix,
                "ARTIFACT_BUCKET": shared.bucket.bucket_name,
                "ALLOWED_BUCKETS": json.dumps(list(config.pipeline.allowed_source_buckets)),
                "MONITORED_ENDPOINTS": json.dumps(list(config.monitored_endpoints)),
                "QUANTIZE_INSTANCE_TYPE": config.instances.quantize,
                "EVALUATE_INSTANCE_TYPE": config.instances.evaluate,
                "SERVING_INSTANCE_TYPE": config.instances.serving,
                "QUANTIZE_IMAGE_URI": quantize_image,
                "EVALUATE_IMAGE_URI": evaluate_image,
                "SERVING_IMAGE_URI": serving_image,
                "KMS_KEY_ARN": shared.key.key_arn,
                "SERVING_VARIANT": config.serving_variant,
                "MIN_BAKE_MINUTES": str(config.monitoring.min_bake_minutes),
                "ROLLBACK_SIGNALS": json.dumps(list(ROLLBACK_SIGNALS)),
            },
            **shared.function_options(),
        )
