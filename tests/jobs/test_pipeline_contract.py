"""The pipeline's training job hands jobs/quantize.py the hyperparameters that the
validate Lambda (lambda/validate_input/run_spec.py) builds, through
hyperparameters.json: the job must read them as the spec meant."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lambda" / "validate_input"))

from run_spec import Defaults, validate_spec  # noqa: E402

from jobs.quantize import read_hyperparameters  # noqa: E402
from jobs.quantize_support import validate_hyperparameters  # noqa: E402


def test_pipeline_hyperparameters_reach_the_job_unchanged(tmp_path):
    defaults = Defaults(
        resource_prefix="llmq-dev",
        artifact_bucket="artifacts",
        monitored_endpoints=("llmq-dev-chat",),
        quantize_instance_type="ml.g6e.4xlarge",
        evaluate_instance_type="ml.g5.2xlarge",
        serving_instance_type="ml.g5.2xlarge",
        quantize_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313",
        evaluate_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313",
        serving_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130",
    )
    raw = {
        "model_name": "llama-8b",
        "source_model_uri": "s3://artifacts/sources/llama-8b/",
        "model_parameters_billion": 8.03,
        "calibration_uri": "s3://artifacts/calibration/",
        "validation_uri": "s3://artifacts/validation/",
        "algorithm": "awq",
        "scheme": "W4A16_ASYM",
        "group_size": 64,
        "num_calibration_samples": 64,
        "max_seq_length": 1024,
        "seed": 7,
        "ignore": ["lm_head", "re:.*gate$"],
        "baseline_endpoint": "llmq-dev-chat",
        "canary": [{"weight": 10, "bake_minutes": 5}, {"weight": 100, "bake_minutes": 5}],
    }
    outcome = validate_spec(raw, defaults)
    assert outcome.valid, outcome.message
    config = tmp_path / "hyperparameters.json"
    # SageMaker writes every hyperparameter as a string, as the plan already holds them.
    config.write_text(json.dumps(outcome.run["hyperparameters"]))
    hp, problems = validate_hyperparameters(read_hyperparameters([], config))
    assert problems == [] and hp is not None
    assert (hp.algorithm, hp.scheme, hp.group_size) == ("awq", "W4A16_ASYM", 64)
    assert (hp.num_calibration_samples, hp.max_seq_length, hp.seed) == (64, 1024, 7)
    assert "re:.*gate$" in hp.ignore
