"""The quantize sizing rule (lambda/validate_input/quantize_sizing.py) and its use in input validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_spec_support import DEFAULTS, example_spec

ROOT = Path(__file__).resolve().parents[2]

from quantize_sizing import (  # noqa: E402 - on sys.path through tests.run_spec_support
    HOST_GIB_PER_EXTRA_RANK,
    INSTANCES_BY_NAME,
    NCCL_GIB_PER_GPU,
    cheapest_fitting,
    estimate,
    instance_problem,
    llama_shape,
    ranks_on,
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
    # AWQ of 405B with 128 x 2048 tokens caches more activations than any one GPU holds, but
    # eight ranks each cache an eighth (NOT MEASURED: docs/quantize-sizing.md "Several GPUs").
    assert estimate(405, "awq").gpu_memory_gib > max(i.gpu_memory_gib for i in INSTANCES_BY_NAME.values())
    assert cheapest_fitting(estimate(405, "awq")).gpus == 8


# The fitted one-GPU rule, as docs/quantize-sizing.md printed it before the job ran one rank per
# GPU: (parameters, algorithm, samples) -> (host RAM, GPU, disk, H200 seconds). It must not move.
ONE_GPU_RULE = {
    (8.03, "gptq", 128): (27.9, 7.5, 31, 224.3),
    (8.03, "awq", 128): (27.9, 52.4, 31, 437.3),
    (70.6, "gptq", 128): (214.4, 17.7, 189, 1972.4),
    (70.6, "awq", 128): (214.4, 105.1, 189, 3845.1),
    (405.9, "gptq", 128): (1213.7, 47.2, 1039, 11339.8),
    (405.9, "awq", 128): (1213.7, 200.2, 1039, 22106.3),
    (405.9, "awq", 32): (1213.7, 59.8, 1039, 5526.6),
}


@pytest.mark.parametrize(("key", "expected"), ONE_GPU_RULE.items(), ids=str)
def test_the_one_gpu_rule_is_the_fitted_one(key, expected):
    params, algorithm, samples = key
    needs = estimate(params, algorithm, samples=samples)
    assert needs.ranks == 1
    assert (needs.host_memory_gib, needs.gpu_memory_gib, needs.disk_gib, needs.h200_seconds) == expected
    assert needs.on(INSTANCES_BY_NAME["ml.g6e.16xlarge"]) == needs  # a one-GPU instance: the same needs


def test_ranks_follow_the_job_one_per_gpu_but_one_for_rtn_and_no_more_than_samples():
    eight = INSTANCES_BY_NAME["ml.p4de.24xlarge"]
    assert ranks_on(eight, "gptq", 128) == 8
    assert ranks_on(eight, "awq", 3) == 3
    assert ranks_on(eight, "rtn", 128) == 1
    assert ranks_on(INSTANCES_BY_NAME["ml.g6e.xlarge"], "awq", 128) == 1


def test_n_ranks_split_awq_activations_and_time_but_not_the_layer_or_the_model():
    one, eight = estimate(70.6, "awq"), estimate(70.6, "awq", ranks=8)
    layer_and_fixed = one.gpu_memory_gib - 7.2 * 128 * 2048 * 28672 * 2 / 2**30
    # Per GPU: the layer and the context stay, AWQ's cached activations are an eighth, NCCL adds.
    assert eight.gpu_memory_gib == pytest.approx(
        layer_and_fixed + (one.gpu_memory_gib - layer_and_fixed) / 8 + NCCL_GIB_PER_GPU, abs=0.1
    )
    # Host: the model once (shared memory), one process more per rank.
    assert eight.host_memory_gib == pytest.approx(one.host_memory_gib + 7 * HOST_GIB_PER_EXTRA_RANK, abs=0.1)
    assert eight.disk_gib == one.disk_gib
    assert one.h200_seconds / 5 < eight.h200_seconds < one.h200_seconds / 2
    # GPTQ's activation term is not split (a one-point fit): only NCCL's buffers are added.
    gptq_one, gptq_eight = estimate(70.6, "gptq"), estimate(70.6, "gptq", ranks=8)
    assert gptq_eight.gpu_memory_gib == pytest.approx(gptq_one.gpu_memory_gib + NCCL_GIB_PER_GPU, abs=0.1)


def test_too_small_instance_names_the_cheapest_that_fits():
    message = instance_problem("ml.g5.4xlarge", estimate(8, "awq"))
    assert message is not None
    assert "needs 52" in message and "GiB on one GPU (it has 24)" in message
    # Four A10Gs each cache a quarter of AWQ's activations: cheaper than one 80 GB GPU.
    assert "the cheapest instance that fits is ml.g5.24xlarge" in message
    assert instance_problem("ml.g5.24xlarge", estimate(8, "awq")) is None
    assert instance_problem("ml.g5.4xlarge", estimate(8, "gptq")) is None
    assert "no single instance fits" in instance_problem("ml.p5e.48xlarge", estimate(405, "awq", samples=4096))


def test_a_multi_gpu_instance_is_judged_per_gpu_with_one_rank_each():
    # 405B GPTQ on eight 48 GB L40S: 47.2 GiB fitted one GPU, plus NCCL's buffers on each rank.
    message = instance_problem("ml.g6e.48xlarge", estimate(405.9, "gptq"))
    assert message is not None and "GiB on each of its 8 GPUs (it has 48)" in message
    assert instance_problem("ml.p5.48xlarge", estimate(405.9, "gptq")) is None


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


@pytest.mark.parametrize("gpus", ["all", "1"])
def test_the_sizing_doc_prints_the_rules_own_tables(gpus):
    command = [sys.executable, "benchmarks/sizing_table.py", "--gpus", gpus]
    printed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    table = printed.split("\n\nPrices")[0]
    assert table in (ROOT / "docs" / "quantize-sizing.md").read_text(), "rerun benchmarks/sizing_table.py"


def test_small_sources_are_sized_for_float32_calibration():
    """Up to FLOAT32_CALIBRATION_MAX_PARAMETERS the job calibrates in float32 on a GPU too: the
    host holds 4 bytes a parameter, twice what a bf16 source of the same size needs."""
    from contracts.support_table import FLOAT32_CALIBRATION_MAX_PARAMETERS

    limit = FLOAT32_CALIBRATION_MAX_PARAMETERS / 1e9
    small, large = estimate(limit, "gptq"), estimate(limit * 1.01, "gptq")
    bf16_gib = limit * 1e9 * 2 / 1024**3
    assert small.host_memory_gib == pytest.approx(1.6 * 2 * bf16_gib + 4.0, abs=0.1)
    assert large.host_memory_gib == pytest.approx(1.6 * 1.01 * bf16_gib + 4.0, abs=0.1)
    assert small.gpu_memory_gib > large.gpu_memory_gib  # float32 layers and activations
    assert small.disk_gib <= large.disk_gib  # the files stay in their source dtype
