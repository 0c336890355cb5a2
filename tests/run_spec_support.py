"""The validate function's pure modules, importable from every test suite.

They live in lambda/validate_input/ under their in-Lambda names (run_spec,
quantize_sizing); this puts that folder on sys.path once and holds the
deployment defaults the tests share.
"""

from __future__ import annotations

import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "lambda" / "validate_input"
if str(FOLDER) not in sys.path:
    sys.path.insert(0, str(FOLDER))

from run_spec import Defaults, validate_spec  # noqa: E402

__all__ = ["DEFAULTS", "Defaults", "example_spec", "validate_spec"]

DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
DEFAULTS = Defaults(
    resource_prefix="llmq-dev",
    artifact_bucket="artifacts-bucket",
    allowed_buckets=("shared-models",),
    monitored_endpoints=("llmq-dev-chat",),
    quantize_instance_type="ml.g5.4xlarge",
    evaluate_instance_type="ml.g5.2xlarge",
    serving_instance_type="ml.g5.2xlarge",
    quantize_image_uri=f"{DLC}/pytorch-training:2.10.0-gpu-py313",
    evaluate_image_uri=f"{DLC}/pytorch-training:2.10.0-gpu-py313",
    serving_image_uri=f"{DLC}/djl-inference:0.38.0-lmi29.0.0-cu130",
    kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    region="us-east-1",
)


def example_spec(**overrides: object) -> dict[str, object]:
    """A valid execution input for an 8B GPTQ run against DEFAULTS."""
    return {
        "model_name": "llama-8b",
        "source_model_uri": "s3://artifacts-bucket/sources/llama-8b/",
        "model_parameters_billion": 8.03,
        "calibration_uri": "s3://artifacts-bucket/calibration/",
        "validation_uri": "s3://artifacts-bucket/validation/",
        "algorithm": "gptq",
        "scheme": "W4A16",
        "baseline_endpoint": "llmq-dev-chat",
        "canary": [{"weight": 10, "bake_minutes": 10}, {"weight": 100, "bake_minutes": 10}],
        **overrides,
    }
