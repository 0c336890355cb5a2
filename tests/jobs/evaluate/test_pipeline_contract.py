"""The pipeline's evaluate step calls the evaluate job (jobs/evaluate/) with arguments built by the
validate Lambda (lambda/validate_input/run_spec.py): they must parse with the job's
own parser and carry the gate's thresholds, or the step would fail only in AWS."""

from __future__ import annotations

from jobs.evaluate.job import build_parser, fidelity_source, targets_from_args
from tests.run_spec_support import DEFAULTS, example_spec, validate_spec


def test_pipeline_evaluate_arguments_parse_with_the_jobs_parser_and_carry_the_gate():
    gate = {"max_perplexity_increase_pct": 4.5, "max_p95_latency_increase_pct": 20, "min_throughput_ratio": 0.9}
    raw = example_spec(gate=gate)
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
    assert str(args.manifest_dir) == "/opt/ml/processing/input/manifest"
    # Both variants of the baseline endpoint, by TargetVariant, in LMI's schema; fidelity through the engine.
    plan = outcome.run
    assert args.baseline_url is None and args.candidate_url is None
    assert args.baseline_endpoint == args.candidate_endpoint == plan["baseline_endpoint"]
    assert (args.baseline_variant, args.candidate_variant) == (plan["variants"]["serving_name"], "candidate")
    assert args.serving_protocol == "lmi" and args.fidelity is None  # None: the engine, as targets are given
    assert args.region and args.measured_instance_type == plan["instances"]["serving"]
    targets = targets_from_args(args)
    assert targets is not None and fidelity_source(args, targets) == "engine"
