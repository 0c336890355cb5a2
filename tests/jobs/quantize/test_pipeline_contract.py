"""The pipeline's training job hands the quantize job (jobs/quantize/) the hyperparameters that the
validate Lambda (lambda/validate_input/run_spec.py) builds, through
hyperparameters.json: the job must read them as the spec meant."""

from __future__ import annotations

import json

from jobs.quantize.job import read_arguments
from jobs.quantize.support import validate_hyperparameters
from tests.run_spec_support import DEFAULTS, example_spec, validate_spec


def test_pipeline_hyperparameters_reach_the_job_unchanged(tmp_path):
    defaults = DEFAULTS.model_copy(update={"quantize_instance_type": "ml.g6e.4xlarge"})
    raw = example_spec(
        algorithm="awq",
        scheme="W4A16_ASYM",
        group_size=64,
        num_calibration_samples=64,
        max_seq_length=1024,
        seed=7,
        ignore=["lm_head", "re:.*gate$"],
    )
    outcome = validate_spec(raw, defaults)
    assert outcome.valid, outcome.message
    config = tmp_path / "hyperparameters.json"
    # SageMaker writes every hyperparameter as a string, as the plan already holds them.
    config.write_text(json.dumps(outcome.run["hyperparameters"]))
    hp, problems = validate_hyperparameters(read_arguments([], tmp_path))
    assert problems == [] and hp is not None
    assert (hp.algorithm, hp.scheme, hp.group_size) == ("awq", "W4A16_ASYM", 64)
    assert (hp.num_calibration_samples, hp.max_seq_length, hp.seed) == (64, 1024, 7)
    assert "re:.*gate$" in hp.ignore
