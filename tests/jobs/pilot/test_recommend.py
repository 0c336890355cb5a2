"""The sweep's recommendation follows the declared workload, not a fixed rule."""

from pathlib import Path

from jobs.evaluate.gate import Thresholds, Workload, evaluate_gate
from jobs.evaluate.stats import cost_per_million_tokens
from jobs.pilot.steps import Candidate
from jobs.pilot.summary import recommend

FID = {"baseline_perplexity": 12.0, "candidate_perplexity": 12.4, "ppl_increase_pct": 3.3, "token_count": 4095}
HOURLY = 0.115
# Tokens/s and P95 per concurrency, shaped like a measurement on a 2-core AVX2 machine: W8A8 is 2x
# faster than BF16 at concurrency 16 and 2x slower at concurrency 1.
BASE = {1: (8.6, 7.5), 16: (14.9, 70.0)}
W8A8 = {1: (4.1, 15.6), 16: (30.1, 34.0)}


def candidate(scheme, shape, conc):
    perf = {
        "measured": True,
        "variants": {
            v: {
                "levels": {
                    str(conc): {"output_tokens_per_s": s[conc][0], "latency_p95_s": s[conc][1], "error_rate": 0.0}
                }
            }
            for v, s in (("baseline", BASE), ("candidate", shape))
        },
    }
    cand = Candidate(scheme, Path("/unused"))
    cand.report = {
        "gate": evaluate_gate(FID, perf, Thresholds(), Workload(conc)),
        "cost": {
            "usd_per_1m_output_tokens": {
                "baseline": cost_per_million_tokens(HOURLY, BASE[conc][0]),
                "candidate": cost_per_million_tokens(HOURLY, shape[conc][0]),
            }
        },
    }
    return cand


def test_batch_traffic_gets_the_quantized_model():
    cand = candidate("W8A8", W8A8, 16)
    rec = recommend([cand], cost_per_million_tokens(HOURLY, BASE[16][0]), Workload(16))
    assert rec["choice"] == "W8A8"


def test_single_user_traffic_keeps_the_baseline():
    cand = candidate("W8A8", W8A8, 1)
    assert cand.report is not None and cand.report["gate"]["passed"] is False  # P95 x2 at concurrency 1
    rec = recommend([cand], cost_per_million_tokens(HOURLY, BASE[1][0]), Workload(1))
    assert rec["choice"] == "baseline"
    assert rec["rejected"][0]["scheme"] == "W8A8" and "P95" in rec["rejected"][0]["why"]


def test_cheapest_passing_candidate_wins_and_unmeasured_ones_are_not_chosen():
    fast = candidate("W8A8", W8A8, 16)
    faster = candidate("FP8_DYNAMIC", {1: (9.0, 7.0), 16: (40.0, 30.0)}, 16)
    unserved = Candidate("W4A16", Path("/unused"), serve_blocker="cannot be served")
    unserved.report = {"gate": {"passed": True, "reasons": []}, "cost": {"usd_per_1m_output_tokens": {}}}
    rec = recommend([fast, faster, unserved], cost_per_million_tokens(HOURLY, BASE[16][0]), Workload(16))
    assert rec["choice"] == "FP8_DYNAMIC"
    assert {r["scheme"] for r in rec["rejected"]} == {"W4A16"}
