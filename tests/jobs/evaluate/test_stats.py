"""Statistics, cost and gate on known inputs (no model, no server)."""

import math

import pytest

from jobs.evaluate.cost import PriceTable, kv_cache_bytes_per_token, smallest_fitting_instance
from jobs.evaluate.gate import (
    GATE_MAX_BYTES,
    GateConfigError,
    Thresholds,
    Workload,
    evaluate_gate,
    gate_json,
    pipeline_gate,
)
from jobs.evaluate.stats import RequestResult, cost_per_million_tokens, percentile, summarize, throughput


def test_percentile_matches_linear_interpolation_on_known_values():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)  # numpy.percentile(..., 95) of 1..5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_throughput_is_tokens_over_wall_time_and_excludes_failures():
    results = [
        RequestResult(ok=True, latency_s=1.0, ttft_s=0.1, output_tokens=10),
        RequestResult(ok=True, latency_s=2.0, ttft_s=0.2, output_tokens=20),
        RequestResult(ok=True, latency_s=3.0, ttft_s=0.3, output_tokens=30),
        RequestResult(ok=False, latency_s=0.01, error="ConnectionError: refused"),
    ]
    level = summarize(4, results, wall_s=4.0)
    assert level.output_tokens == 60
    assert level.output_tokens_per_s == pytest.approx(15.0)
    assert level.requests == 4 and level.errors == 1
    assert level.error_rate == pytest.approx(0.25)
    assert level.latency_p50_s == pytest.approx(2.0)  # the fast failure is not counted as latency
    assert level.ttft_p50_s == pytest.approx(0.2)
    assert level.error_samples == ["ConnectionError: refused"]
    with pytest.raises(ValueError):
        throughput(10, 0.0)


def test_cost_per_million_tokens_from_hourly_price_and_rate():
    # 1.0 $/h at 100 tokens/s = 360,000 tokens per hour -> 2.777... $ per 1M tokens
    assert cost_per_million_tokens(1.0, 100.0) == pytest.approx(1e6 / 360_000)
    assert cost_per_million_tokens(0.115, 0.0) == math.inf
    assert cost_per_million_tokens(2.0, 50.0) == pytest.approx(4 * cost_per_million_tokens(1.0, 100.0))


LLAMA_8B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096}


def test_kv_cache_bytes_per_token_of_a_gqa_llama():
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert kv_cache_bytes_per_token(LLAMA_8B) == 131072


def test_smaller_weights_fit_a_cheaper_instance():
    table = PriceTable.load()
    assert table.as_of and table.source and "on-demand" in table.price_kind
    common: dict = {"config": LLAMA_8B, "concurrency": 16, "context_tokens": 4096}
    bf16 = smallest_fitting_instance(table, scheme="BF16", weight_bytes=16_060_000_000, **common)
    w4 = smallest_fitting_instance(table, scheme="W4A16", weight_bytes=5_700_000_000, **common)
    # 15 GiB of weights + 8 GiB of KV cache + 1 GiB overhead exceed 90 % of any single 24 GB card;
    # int4 weights (5.3 GiB) + KV + overhead (14.3 GiB) fit one 16 GB T4 at 90 % (Marlin runs on 7.5).
    assert bf16["instance_type"] not in {"ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.2xlarge"}
    assert w4["instance_type"] == "ml.g4dn.xlarge"
    fp8 = smallest_fitting_instance(table, scheme="FP8_DYNAMIC", weight_bytes=8_500_000_000, **common)
    assert fp8["instance_type"] == "ml.g6.2xlarge"  # FP8 W8A8 needs Ada (L4), not T4 or A10G
    assert w4["usd_per_hour"] < bf16["usd_per_hour"]
    assert w4["required_bytes"] < bf16["required_bytes"]


def level(p95, tps, err=0.0):
    return {"latency_p95_s": p95, "output_tokens_per_s": tps, "error_rate": err}


def perf(base, cand, conc=16):
    return {
        "measured": True,
        "variants": {"baseline": {"levels": {str(conc): base}}, "candidate": {"levels": {str(conc): cand}}},
    }


FID = {"baseline_perplexity": 10.0, "candidate_perplexity": 10.3, "ppl_increase_pct": 3.0, "token_count": 4095}


def test_gate_passes_within_every_threshold_and_says_so():
    gate = evaluate_gate(FID, perf(level(2.0, 100.0), level(1.5, 150.0)), Thresholds(), Workload(16))
    assert gate["passed"] is True
    assert all(r.startswith("ok") for r in gate["reasons"])
    assert any("x1.50" in r for r in gate["reasons"])


def test_gate_fails_with_a_reason_per_broken_threshold():
    fid = dict(FID, candidate_perplexity=12.0, ppl_increase_pct=20.0)
    gate = evaluate_gate(fid, perf(level(1.0, 100.0), level(2.0, 50.0, err=0.1)), Thresholds(), Workload(16))
    assert gate["passed"] is False
    fails = [r for r in gate["reasons"] if r.startswith("FAIL")]
    assert len(fails) == 4  # perplexity, error rate, p95 ratio, throughput ratio
    assert gate["reasons"][: len(fails)] == fails  # failures first
    assert any("+20.00 %" in r and "5 %" in r for r in fails)


def test_gate_p95_objective_decides_at_the_declared_workload():
    p = perf(level(0.4, 100.0), level(0.45, 95.0), conc=1)
    assert evaluate_gate(FID, p, Thresholds(), Workload(1, p95_objective_s=0.5))["passed"] is True
    gate = evaluate_gate(FID, p, Thresholds(), Workload(1, p95_objective_s=0.3))
    assert gate["passed"] is False
    assert any("misses the 0.3 s objective" in r for r in gate["reasons"])


def test_gate_without_speed_judges_fidelity_and_states_speed_not_measured():
    gate = evaluate_gate(FID, {"measured": False, "reason": "W4A16 cannot be served here"}, Thresholds(), Workload())
    assert gate["passed"] is True
    assert any(r.startswith("n/a") and "W4A16 cannot be served here" in r for r in gate["reasons"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_ppl_increase_pct": -1},
        {"max_p95_latency_ratio": 0},
        {"min_throughput_ratio": -0.5},
        {"max_error_rate": 1.5},
        {"max_error_rate": float("nan")},
    ],
)
def test_thresholds_out_of_range_are_refused(kwargs):
    with pytest.raises(GateConfigError):
        Thresholds(**kwargs).validate()


def test_workload_must_be_a_measured_level():
    with pytest.raises(GateConfigError, match="not among the measured levels"):
        Workload(8).validate([1, 4, 16])


def test_the_pipelines_gate_file_stays_bounded_and_keeps_the_failures_first():
    reasons = [f"FAIL: check {i} " + "\u00e9" * 800 for i in range(100)]
    summary = pipeline_gate({"passed": False, "reasons": reasons, "checks": [{"huge": "x" * 10**6}]})
    assert summary["passed"] is False
    assert len(gate_json(summary)) <= GATE_MAX_BYTES
    assert summary["reasons"][0].startswith("FAIL: check 0 ")
    assert summary["reasons"][-1] == f"... {100 - (len(summary['reasons']) - 1)} more in report.json"
    small = {"passed": True, "reasons": ["ok: perplexity 12.0 -> 12.1"]}
    assert pipeline_gate({**small, "checks": []}) == small
