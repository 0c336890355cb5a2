"""The quantize sizing rule (lambda/validate_input/quantize_sizing.py) and its use in input validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.run_spec_support import DEFAULTS, example_spec

ROOT = Path(__file__).resolve().parents[2]

from quantize_sizing import (  # noqa: E402 - on sys.path through tests.run_spec_support
    INSTANCES_BY_NAME,
    cheapest_fitting,
    estimate,
    instance_problem,
    llama_shape,
)
from run_spec import validate_spec  # noqa: E402

MEASURED = json.loads((ROOT / "benchmarks" / "results" / "gpu-scale-h200.json").read_text())


def _run(label: str) -> dict:
    return next(r for r in MEASURED["runs"] if r["label"] == label)


def test_reference_shapes_are_reproduced():
    assert llama_shape(8.0) == (4096, 14336, 32)
    assert llama_shape(70.6) == (8192, 28672, 80)
    assert llama_shape(405.9) == (16384, 53248, 126)


@pytest.mark.parametrize("algorithm", ["gptq", "awq"])
def test_estimate_covers_the_measured_8b_run_with_a_small_margin(algorithm):
    measured = _run(f"job-{algorithm}")
    needs = estimate(8.03, algorithm)
    # Never below what the job really used, never wildly above (the rule picks instances).
    assert measured["peak_host_rss_gib"] <= needs.host_memory_gib <= 1.3 * measured["peak_host_rss_gib"]
    assert measured["peak_gpu_mem_gib"] <= needs.gpu_memory_gib <= 1.2 * measured["peak_gpu_mem_gib"]
    assert needs.h200_seconds == pytest.approx(measured["wall_seconds"], rel=0.05)
    source_gib = MEASURED["source_bytes"] / 2**30
    assert needs.disk_gib >= source_gib + MEASURED["disk_bytes"][f"job-{algorithm}"] / 2**30


def test_gpu_memory_grows_with_calibration_tokens_and_host_memory_with_parameters():
    small, large = estimate(8, "awq", samples=64), estimate(8, "awq", samples=128)
    assert small.gpu_memory_gib < large.gpu_memory_gib
    assert small.host_memory_gib == large.host_memory_gib
    assert estimate(70, "gptq").host_memory_gib > 7 * estimate(8, "gptq").host_memory_gib


def test_cheapest_fitting_instance_for_8b_70b_405b():
    assert cheapest_fitting(estimate(8, "gptq")).name == "ml.g6e.xlarge"
    big = cheapest_fitting(estimate(70, "gptq"))
    assert big.host_memory_gib >= 212 and big.gpu_memory_gib >= 18
    huge = cheapest_fitting(estimate(405, "gptq"))
    assert huge.host_memory_gib >= 1211
    # AWQ of 405B with 128 x 2048 tokens caches more activations than any one GPU holds.
    assert cheapest_fitting(estimate(405, "awq")) is None


def test_too_small_instance_names_the_cheapest_that_fits():
    message = instance_problem("ml.g5.4xlarge", estimate(8, "awq"))
    assert message is not None
    assert "needs 52" in message and "GiB on one GPU (it has 24)" in message
    assert "the cheapest instance that fits is ml.p4de.24xlarge" in message
    assert instance_problem("ml.g5.4xlarge", estimate(8, "gptq")) is None
    assert "no single instance fits" in instance_problem("ml.p5e.48xlarge", estimate(405, "awq"))


def test_unknown_instance_types_are_not_judged():
    assert "ml.g4dn.2xlarge" not in INSTANCES_BY_NAME
    assert instance_problem("ml.g4dn.2xlarge", estimate(70, "awq")) is None


def test_validation_refuses_a_quantize_instance_that_cannot_hold_the_model():
    defaults = DEFAULTS.model_copy(update={"quantize_instance_type": "ml.g5.4xlarge"})
    raw = example_spec(model_name="llama-70b", model_parameters_billion=70.6)
    outcome = validate_spec(raw, defaults)
    assert not outcome.valid
    (problem,) = outcome.problems
    assert problem.field == "quantize_instance_type"
    assert "ml.g5.4xlarge cannot hold a 70.6B-parameter gptq job" in problem.message
    assert "GiB host RAM (it has 64)" in problem.message
    ok = validate_spec({**raw, "quantize_instance_type": cheapest_fitting(estimate(70.6, "gptq")).name}, defaults)
    assert ok.valid, ok.message
