"""The pipeline's evaluate step calls jobs/evaluate.py with arguments built by the
validate Lambda (lambda/validate_input/run_spec.py): they must parse with the job's
own parser and carry the gate's thresholds, or the step would fail only in AWS."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lambda" / "validate_input"))

from run_spec import Defaults, validate_spec  # noqa: E402

from jobs.evaluate import build_parser  # noqa: E402

DEFAULTS = Defaults(
    resource_prefix="llmq-dev",
    artifact_bucket="artifacts",
    monitored_endpoints=("llmq-dev-chat",),
    quantize_instance_type="ml.g5.4xlarge",
    evaluate_instance_type="ml.g5.2xlarge",
    serving_instance_type="ml.g5.2xlarge",
    quantize_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313",
    evaluate_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313",
    serving_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130",
)


def test_pipeline_evaluate_arguments_parse_with_the_jobs_parser_and_carry_the_gate():
    raw = {
        "model_name": "llama-8b",
        "source_model_uri": "s3://artifacts/sources/llama-8b/",
        "model_parameters_billion": 8.03,
        "calibration_uri": "s3://artifacts/calibration/",
        "validation_uri": "s3://artifacts/validation/",
        "algorithm": "gptq",
        "scheme": "W4A16",
        "baseline_endpoint": "llmq-dev-chat",
        "canary": [{"weight": 10, "bake_minutes": 5}, {"weight": 100, "bake_minutes": 5}],
        "gate": {"max_perplexity_increase_pct": 4.5, "max_p95_latency_increase_pct": 20, "min_throughput_ratio": 0.9},
    }
    outcome = validate_spec(raw, DEFAULTS)
    assert outcome.valid, outcome.message
    args = build_parser().parse_args(outcome.run["evaluate_arguments"])
    assert str(args.baseline_dir) == "/opt/ml/processing/input/baseline"
    assert str(args.candidate_dir) == "/opt/ml/processing/input/candidate"
    assert str(args.validation) == "/opt/ml/processing/input/validation"
    assert str(args.output_dir) == "/opt/ml/processing/output"
    assert args.max_ppl_increase_pct == 4.5
    assert args.max_p95_latency_ratio == 1.2
    assert args.min_throughput_ratio == 0.9
    # Offline: no server is named, so the job measures fidelity only.
    assert args.baseline_url is None and args.candidate_endpoint is None
