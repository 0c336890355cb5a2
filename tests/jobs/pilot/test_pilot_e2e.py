"""The pilot end to end on the real SmolLM2-135M: quantize, two vLLM servers, LiteLLM, report.

One pilot run (small settings) is shared by the assertions; the evaluate job's SageMaker entry
point then runs offline on the pilot's artifact.
"""

import json
import math
import os
import subprocess

import pytest

from tests.jobs.entry_point import run_entry_point
from tests.jobs.pilot.conftest import ROOT, pilot_cmd, processes_mentioning

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pilot_run(tmp_path_factory, smollm2_dir):
    tmp = tmp_path_factory.mktemp("pilot")
    args = [
        "--artifacts", str(tmp / "artifacts"), "--run-id", "t1", "--schemes", "W8A8",
        "--concurrency", "1,4", "--workload-concurrency", "4", "--requests", "4",
        "--max-tokens", "16", "--max-validation-tokens", "600", "--max-model-len", "256",
        # The default automatic recipe with a budget that only its first candidate (rtn) fits:
        # the search's path through the pilot, at the fast path's cost (the search itself is
        # tested in tests/jobs/quantize/test_quantize_search.py).
        "--search-budget-seconds", "1",
    ]  # fmt: skip
    proc = subprocess.run(pilot_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)
    store = tmp / "artifacts" / "models" / "smollm2-135m-instruct"
    return proc, store, tmp


def test_pilot_succeeds_and_prints_table_and_decision(pilot_run):
    proc, _, _ = pilot_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "== 5/6 serve with vLLM" in out and "servers stopped" in out
    assert "W8A8: gate" in out and "RECOMMENDATION:" in out
    assert "out tok/s" in out and "ppl +%" in out


def test_pilot_prints_the_live_quality_metrics_beside_the_speed_table_and_they_are_sane(pilot_run):
    proc, store, _ = pilot_run
    out = proc.stdout
    speed, quality = out.index("out tok/s"), out.index("live quality (the canary sampler's metrics")
    assert speed < quality < out.index("W8A8: gate")
    live = json.loads((store / "t1" / "pilot.json").read_text())["live_quality"]
    assert set(live) == {"baseline", "W8A8"}
    # The baseline judged against its own reference: the same outputs, the same scores.
    own = live["baseline"]["metrics"]
    assert own["GreedyAgreementPercent"] == 100.0 and own["OutputLengthRatio"] == 1.0
    assert own["PerplexityIncreasePercent"] == pytest.approx(0.0, abs=1e-6)
    assert live["baseline"]["prompts"] == 4 and live["baseline"]["scored_tokens"] > 4
    cand = live["W8A8"]["metrics"]
    assert set(cand) == {
        "PerplexityIncreasePercent",
        "GreedyAgreementPercent",
        "EmptyOrRefusalPercent",
        "OutputLengthRatio",
    }
    assert 0 <= cand["GreedyAgreementPercent"] <= 100 and 0 <= cand["EmptyOrRefusalPercent"] <= 100
    assert -50 < cand["PerplexityIncreasePercent"] < 100 and 0 < cand["OutputLengthRatio"] < 10
    assert live["W8A8"]["scored_tokens"] == live["baseline"]["scored_tokens"]  # the same reference tokens


def test_pilot_leaves_no_process_running(pilot_run):
    _, _, tmp = pilot_run
    assert processes_mentioning(str(tmp)) == []


def test_artifact_store_has_the_bucket_layout(pilot_run):
    _, store, _ = pilot_run
    run = store / "t1-w8a8"
    assert (run / "artifact" / "config.json").is_file()
    assert list((run / "artifact").glob("*.safetensors"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["quantization"]["scheme"] == "W8A8"
    # The pilot's default recipe is the search; the budget let only its first candidate run.
    assert manifest["quantization"]["recipe"] == "auto" and manifest["search"]["winner"] == "rtn"
    assert [c["status"] for c in manifest["search"]["candidates"]][1:] == ["skipped"] * 5
    # The quantize job got the pilot's validation set for the calibration fitness report.
    assert manifest["calibration"]["fitness"]["validation_drift"] is not None
    assert list((run / "calibration").glob("*.jsonl"))
    for name in ("report.json", "report.md", "performance.png", "review.json", "review.html"):
        assert (run / "reports" / name).is_file(), name
    review = json.loads((run / "reports" / "review.json").read_text())
    assert review["models"] == {"baseline": "BF16", "candidate": "W8A8"}
    assert review["method"] == "served (temperature 0)" and len(review["items"]) == 8
    assert (store / "t1" / "pilot.json").is_file()


def test_report_figures_are_positive_and_consistent(pilot_run):
    _, store, _ = pilot_run
    report = json.loads((store / "t1-w8a8" / "reports" / "report.json").read_text())
    fid = report["fidelity"]
    assert fid["baseline_perplexity"] > 1 and fid["candidate_perplexity"] > 1
    assert fid["ppl_increase_pct"] == pytest.approx(
        (fid["candidate_perplexity"] / fid["baseline_perplexity"] - 1) * 100, abs=0.01
    )
    # Served: the engine scores whole chunks until 600 tokens, so at most one chunk more.
    assert fid["method"].startswith("serving engine")
    assert 600 <= fid["token_count"] < 600 + 256
    assert fid["greedy"]["prompts"] == 8 and 0 <= fid["greedy"]["exact_match_rate"] <= 1
    perf = report["performance"]
    assert perf["measured"] is True
    for variant in ("baseline", "candidate"):
        for conc in ("1", "4"):
            level = perf["variants"][variant]["levels"][conc]
            assert level["requests"] == 4 and level["errors"] == 0
            assert level["output_tokens"] == 4 * 16  # ignore_eos: every request writes max_tokens
            assert level["output_tokens_per_s"] == pytest.approx(level["output_tokens"] / level["wall_s"], rel=1e-3)
            assert 0 < level["ttft_p50_s"] <= level["latency_p50_s"] <= level["latency_p95_s"] <= level["latency_p99_s"]
            assert level["latency_p95_s"] <= level["wall_s"] + 1e-3
    ratios = perf["ratios"]["4"]
    base4 = perf["variants"]["baseline"]["levels"]["4"]
    cand4 = perf["variants"]["candidate"]["levels"]["4"]
    assert ratios["throughput"] == pytest.approx(cand4["output_tokens_per_s"] / base4["output_tokens_per_s"], rel=1e-3)
    mem = report["memory"]["variants"]
    assert 0 < mem["candidate"]["weight_bytes"] < mem["baseline"]["weight_bytes"]
    assert mem["baseline"]["server"]["process_rss_bytes"] > 0
    cost = report["cost"]
    hourly = cost["measured_on"]["usd_per_hour"]
    for variant in ("baseline", "candidate"):
        tps = perf["variants"][variant]["levels"]["4"]["output_tokens_per_s"]
        assert cost["usd_per_1m_output_tokens"][variant] == pytest.approx(hourly / (tps * 3600) * 1e6, rel=1e-3)
        assert cost["per_variant"][variant]["smallest_instance"]["instance_type"].startswith("ml.")
    gate = report["gate"]
    assert isinstance(gate["passed"], bool) and gate["reasons"]
    assert gate["workload"]["concurrency"] == 4
    assert not any(isinstance(v, float) and math.isnan(v) for v in level.values())


def test_recommendation_follows_cost_at_the_workload(pilot_run):
    _, store, _ = pilot_run
    summary = json.loads((store / "t1" / "pilot.json").read_text())
    rec = summary["recommendation"]
    cand = summary["candidates"]["W8A8"]
    costs = cand["cost"]["usd_per_1m_output_tokens"]
    if cand["gate"]["passed"] and costs["candidate"] < costs["baseline"]:
        assert rec["choice"] == "W8A8"
    else:
        assert rec["choice"] == "baseline"


def test_evaluate_job_offline_follows_the_sagemaker_contract(pilot_run, smollm2_dir, tmp_path):
    _, store, _ = pilot_run
    env = dict(os.environ)
    env.update(
        {
            "SM_CHANNEL_BASELINE": str(smollm2_dir),
            "SM_CHANNEL_CANDIDATE": str(store / "t1-w8a8" / "artifact"),
            "SM_CHANNEL_VALIDATION": str(store / "t1" / "validation"),
            "SM_OUTPUT_DATA_DIR": str(tmp_path / "out"),
            "SM_OUTPUT_DIR": str(tmp_path / "output"),
            "SM_INPUT_CONFIG_DIR": str(tmp_path / "config"),
        }
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hyperparameters.json").write_text(
        json.dumps({"max_validation_tokens": "300", "greedy_tokens": "4", "max_ppl_increase_pct": "0.0001"})
    )
    proc = run_entry_point("jobs.evaluate", "train", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["models"]["candidate"]["scheme"] == "W8A8"
    assert report["models"]["baseline"]["scheme"] == "BF16"
    assert report["performance"]["measured"] is False
    # A 0.0001 % limit fails any real quantization: a failed gate is a finished job, not a failure.
    assert report["gate"]["passed"] is False
    assert any(r.startswith("FAIL: perplexity") for r in report["gate"]["reasons"])
    # The pipeline reads the verdict from gate.json, beside the report.
    gate = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert gate == {"passed": False, "reasons": report["gate"]["reasons"]}
    assert "gate_passed=0" in proc.stdout
    assert not (tmp_path / "output" / "failure").exists()
    # Offline, the review sample holds the transformers greedy outputs decoded to text.
    review = json.loads((tmp_path / "out" / "review.json").read_text())
    assert review["method"].startswith("offline") and len(review["items"]) == 8
    assert all(isinstance(i["candidate"], str) for i in review["items"]) and any(i["baseline"] for i in review["items"])
    assert (tmp_path / "out" / "review.html").is_file()

    env["SM_CHANNEL_CANDIDATE"] = str(tmp_path / "missing")
    bad = run_entry_point("jobs.evaluate", env=env)
    assert bad.returncode == 1
    assert "does not exist" in (tmp_path / "output" / "failure").read_text()


def test_the_transformers_cross_check_judges_both_models_offline(tmp_path):
    """--fidelity transformers: the served candidate's perplexity comes from transformers, and so
    does the baseline's it is compared with (never a served figure against an offline one)."""
    args = [
        "--artifacts", str(tmp_path / "artifacts"), "--run-id", "t2", "--schemes", "W8A8",
        "--fidelity", "transformers", "--concurrency", "1", "--workload-concurrency", "1",
        "--requests", "2", "--max-tokens", "8", "--max-validation-tokens", "300", "--max-model-len", "256",
        "--algorithm", "rtn",  # the fast path: this test is about fidelity, not the recipe
    ]  # fmt: skip
    proc = subprocess.run(pilot_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4/6 fidelity: perplexity (offline, transformers on CPU)" in proc.stdout
    out = tmp_path / "artifacts" / "models" / "smollm2-135m-instruct"
    fid = json.loads((out / "t2-w8a8" / "reports" / "report.json").read_text())["fidelity"]
    assert fid["method"].startswith("transformers") and (fid["window"], fid["stride"]) == (512, 256)
    assert fid["token_count"] == 299  # every token of the 300-token stream after the first
    assert fid["greedy"]["compared_by"] == "words"  # greedy outputs still come from the servers
