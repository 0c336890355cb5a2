"""The automatic recipe (jobs/quantize/search.py, recipes.py, sensitivity.py, fitness.py).

Pure parts (candidates per scheme, the held-out split, byte accounting, the budget rule, the
fitness report) without a model; the search itself end to end on the one-layer tiny Llama
with a tiny calibration set (a few seconds per candidate on 2 cores).
"""

from __future__ import annotations

import json
import time

import pytest

from contracts.prompt_drift import MIN_PROMPTS
from contracts.support_table import SCHEMES, SUPPORTED
from jobs.quantize import fitness, launch, recipes, search, sensitivity
from jobs.quantize.preflight import CalibrationPlan
from jobs.quantize.support import LinearShape, validate_hyperparameters
from jobs.sagemaker_job import perplexity as perplexity_module
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.records import write_jsonl

# --- candidates -------------------------------------------------------------------------------


def test_every_scheme_has_candidates_the_support_table_allows():
    for scheme in SCHEMES:
        found = recipes.candidates_for(scheme)
        assert found, scheme
        assert len({c.name for c in found}) == len(found)
        for candidate in found:
            for part in candidate.algorithm.replace("autoround", "gptq").split("+"):
                assert (part, scheme) in SUPPORTED, (candidate.name, scheme)


def test_weight_only_4_bit_candidates_cover_gptq_variants_awq_and_autoround():
    names = [c.name for c in recipes.candidates_for("W4A16_ASYM")]
    assert names[0] == "gptq"
    assert {"awq-gptq", "autoround", "gptq-no-actorder", "gptq-dampening-0.1"} <= set(names)
    assert not any("smoothquant" in n for n in names)
    variants = {c.name: (c.actorder, c.dampening) for c in recipes.candidates_for("W4A16")}
    assert variants["gptq"] == ("static", 0.01)
    assert variants["gptq-no-actorder"] == (None, 0.01)
    assert variants["gptq-dampening-0.1"] == ("static", 0.1)


def test_w8a8_candidates_try_smoothquant_strengths_and_no_weight_only_algorithm():
    found = recipes.candidates_for("W8A8")
    assert [c.name for c in found][:2] == ["rtn", "smoothquant-0.8-gptq"]
    assert {c.smoothing_strength for c in found if c.smoothing_strength} == {0.5, 0.8, 0.9}
    assert not {c.algorithm for c in found} & {"awq+gptq", "autoround"}
    assert [c.name for c in recipes.candidates_for("FP8_DYNAMIC")] == ["rtn"]


def test_mixed_precision_keeps_layers_at_8_bit_or_unquantized():
    from jobs.quantize.support import GroupResolution

    resolution = GroupResolution(requested=128, effective=64, ignore=["lm_head"])
    layers = ("model.layers.0.mlp.down_proj",)
    four = recipes.quant_args("W4A16", resolution, layers)
    assert four["config_groups"]["group_1"].targets == list(layers)
    assert four["config_groups"]["group_1"].weights.num_bits == 8
    assert four["config_groups"]["group_1"].weights.group_size == 64
    assert four["ignore"] == ["lm_head"]
    eight = recipes.quant_args("W8A8", GroupResolution(None, None, ["lm_head"]), layers)
    assert list(eight["config_groups"]) == ["group_0"]
    assert eight["ignore"] == ["lm_head", *layers]


def test_hyperparameters_recipe_auto_leaves_the_algorithm_to_the_search():
    hp, problems = validate_hyperparameters({"recipe": "auto", "scheme": "FP8_DYNAMIC", "search-budget-seconds": "60"})
    assert problems == [] and hp is not None
    assert (hp.algorithm, hp.recipe, hp.search_budget_seconds, hp.needs_calibration) == ("auto", "auto", 60, True)
    _, problems = validate_hyperparameters({"recipe": "auto", "algorithm": "gptq"})
    assert problems == ["algorithm: leave it out with recipe auto (the search picks it; the manifest records it)"]
    _, problems = validate_hyperparameters({"recipe": "best"})
    assert problems[0].startswith("recipe must be one of fixed, auto")
    hp, _ = validate_hyperparameters({"recipe": "auto", "search_candidates": "gptq, mixed-precision"})
    assert hp is not None and hp.search_candidates == ("gptq", "mixed-precision")


def test_recipe_auto_runs_in_one_process():
    hp, _ = validate_hyperparameters({"recipe": "auto"})
    assert hp is not None
    assert launch.process_count("auto", hp) == 1
    with pytest.raises(JobFailureError, match="one process"):
        launch.process_count("2", hp)


# --- the held-out split -----------------------------------------------------------------------


def test_held_out_split_is_disjoint_spread_and_deterministic():
    texts = [f"sample {i}" for i in range(40)]
    calibration, held_out = search.split_held_out(CalibrationPlan.of_texts(texts))
    assert len(held_out) == 40 // search.HELD_OUT_EVERY
    assert not set(held_out) & set(calibration.texts)
    assert sorted(held_out + calibration.texts) == sorted(texts)
    assert held_out[0] != texts[0] and held_out[-1] == texts[-1]  # spread over the set, not its head
    assert len(calibration.templated) == len(calibration.contents) == len(calibration.texts)
    assert search.split_held_out(CalibrationPlan.of_texts(texts))[1] == held_out
    assert len(search.split_held_out(CalibrationPlan.of_texts(texts[:3]))[1]) == search.MIN_HELD_OUT


def test_too_few_samples_for_a_held_out_split_is_refused():
    with pytest.raises(JobFailureError, match="at least 3 calibration samples"):
        search.split_held_out(CalibrationPlan.of_texts(["a", "b"]))


# --- bytes ------------------------------------------------------------------------------------


def test_physical_bytes_are_the_weights_bit_width_plus_scales_and_packed_zero_points():
    layer = LinearShape("x", in_features=576, out_features=192)
    params = 576 * 192
    groups = 192 * (576 // 64)
    assert sensitivity.physical_bytes(layer, "W4A16", 64) == params // 2 + 2 * groups
    assert sensitivity.physical_bytes(layer, "W4A16_ASYM", 64) == params // 2 + 2 * groups + groups // 2
    assert sensitivity.physical_bytes(layer, "W8A8", None) == params + 2 * 192
    assert sensitivity.physical_bytes(layer, None, None) == 2 * params


def test_units_keep_fused_layers_together_and_choose_stays_within_the_byte_budget():
    shapes = [
        LinearShape(f"model.layers.0.{n}", 64, 64)
        for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj")
    ]
    assert {sensitivity.unit_of(s.name) for s in shapes} == {
        "model.layers.0.self_attn.qkv_proj",
        "model.layers.0.mlp.down_proj",
    }
    errors = {"model.layers.0.mlp.down_proj": 0.5, "model.layers.0.self_attn.qkv_proj": 0.6}
    ranked = sensitivity.units(errors, shapes, "W4A16", "W8A16", 32)
    assert [u.name for u in ranked] == ["model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.down_proj"]
    assert len(ranked[0].layers) == 3
    assert ranked[0].extra_bytes == 3 * ranked[1].extra_bytes > 0
    total = sum(u.scheme_bytes for u in ranked)
    assert sensitivity.choose(ranked, total, budget=0.0) == []
    assert sensitivity.choose(ranked, total, budget=ranked[0].extra_bytes / total) == [ranked[0]]
    assert sensitivity.choose(ranked, total, budget=10.0) == ranked


# --- the time budget --------------------------------------------------------------------------


def test_budget_rule_estimates_from_measured_time_and_keeps_room_for_mixed_precision():
    hp, _ = validate_hyperparameters({"recipe": "auto", "search_budget_seconds": "100"})
    assert hp is not None
    state = search.Search(hp=hp, paths=None, prepared=None, staging=None, dataset=None, scorer=None)  # type: ignore[arg-type]
    by_name = {c.name: c for c in recipes.candidates_for("W4A16")}
    gptq, autoround = by_name["gptq"], by_name["autoround"]
    cost = autoround.cost * 10.0
    assert state.fits(autoround, 0.0) is None  # nothing produced yet: the first always runs
    state.best = (1.0, gptq)
    assert state.fits(autoround, 0.0) is None  # nothing measured: no estimate to refuse on
    state.unit_seconds = 10.0
    assert state.fits(gptq, 70.0) is None  # 10 s + 70 s reserve < 100 s
    reason = state.fits(autoround, 70.0)  # its cost x 10 s + 70 s > 100 s
    assert reason is not None and f"estimated {cost:.0f} s (+70 s kept for mixed-precision)" in reason
    state.started = time.monotonic() - 95
    assert state.fits(gptq, 0.0) is not None


# --- calibration fitness ----------------------------------------------------------------------


def test_fitness_reports_lengths_duplicates_and_warns_when_far_from_validation():
    calibration = [f"def f{i}(x): return x + {i}" for i in range(MIN_PROMPTS)] + ["def f0(x): return x + 0"]
    lengths = [10] * (MIN_PROMPTS + 1)
    prose = [f"The quick brown fox number {i} jumps over the lazy dog near the river bank." for i in range(MIN_PROMPTS)]
    far = fitness.report(calibration, lengths, 8, prose)
    assert far["samples"] == MIN_PROMPTS + 1 and far["duplicates"] == 1
    assert far["tokens"]["truncated"] == MIN_PROMPTS + 1 and far["tokens"]["p50"] == 10
    assert far["validation_drift"]["drifted"] is True
    assert any("far from the validation set" in w for w in far["warnings"])
    assert any("duplicate" in w for w in far["warnings"])
    near = fitness.report(calibration, lengths, 64, calibration[::-1])
    assert near["validation_drift"]["drifted"] is False
    assert not any("far from" in w for w in near["warnings"])
    alone = fitness.report(calibration, lengths, 64, None)
    assert alone["validation_drift"] is None and "no validation channel" in alone["validation_drift_note"]


# --- end to end on the tiny model -------------------------------------------------------------


@pytest.fixture
def small_calibration(tmp_path, pydoc_calibration):
    texts = [json.loads(line)["text"] for line in (pydoc_calibration / "pydoc.jsonl").read_text().splitlines()][:10]
    return write_jsonl(tmp_path / "cal" / "c.jsonl", texts).parent


@pytest.fixture
def validation_markers(tmp_path):
    texts = [f"VALIDATION-ONLY marker sentence number {i} about serving traffic." for i in range(MIN_PROMPTS)]
    return write_jsonl(tmp_path / "val" / "v.jsonl", texts).parent


def auto_args(*candidates: str, scheme: str = "W4A16_ASYM", budget: int = 600) -> tuple[str, ...]:
    return (
        "--recipe", "auto", "--scheme", scheme, "--num-calibration-samples", "10", "--max-seq-length", "48",
        "--search-budget-seconds", str(budget), "--search-candidates", ",".join(candidates),
    )  # fmt: skip


def test_search_keeps_the_best_held_out_candidate_and_records_every_one(
    run_job, tiny_model_dir, small_calibration, validation_markers, monkeypatch
):
    """GPTQ, AutoRound and mixed precision compete; the winner is the lowest held-out score, the
    artifact is the winner's (mixed precision: 8-bit layers in its config), scoring never read
    the validation set, and the manifest says what each candidate scored and cost."""
    monkeypatch.setattr(recipes, "AUTOROUND_ITERS", 4)
    monkeypatch.setattr(sensitivity, "MIXED_BYTE_BUDGET", 0.3)  # one layer: each unit is a large share
    scored: list[list[str]] = []
    original = perplexity_module.tokenize_validation

    def spy(tokenizer, texts, max_tokens):
        scored.append(list(texts))
        return original(tokenizer, texts, max_tokens)

    monkeypatch.setattr(perplexity_module, "tokenize_validation", spy)
    result = run_job(
        tiny_model_dir,
        *auto_args("gptq", "autoround", "mixed-precision"),
        calibration=small_calibration,
        env={"SM_CHANNEL_VALIDATION": str(validation_markers)},
    )
    assert result.code == 0, result.failure
    manifest = result.manifest
    s = manifest["search"]
    rows = {row["name"]: row for row in s["candidates"]}
    assert set(rows) == {"gptq", "autoround", "mixed-precision"}
    assert all(row["status"] == "scored" for row in rows.values()), rows
    assert rows["autoround"]["algorithm"] == "autoround" and rows["autoround"]["autoround_iters"] == 4
    for row in rows.values():
        assert row["seconds"] > 0 and row["held_out_perplexity"] > 0 and "held_out_increase_pct" in row
    best = min(rows.values(), key=lambda r: r["held_out_perplexity"])
    assert s["winner"] == best["name"] and s["why"].startswith(f"{best['name']} has the lowest held-out perplexity")
    assert rows["mixed-precision"]["base"] in ("gptq", "autoround")
    assert s["mixed_precision"]["units"] and s["mixed_precision"]["kept_at"] == "W8A16"
    assert manifest["quantization"]["algorithm"] == "auto" and manifest["quantization"]["recipe"] == "auto"
    # Scoring read held-out calibration samples only, never the validation set.
    assert len(scored) == 1 and len(scored[0]) == s["held_out"]["samples"] == search.MIN_HELD_OUT
    assert not any("VALIDATION-ONLY" in text for text in scored[0])
    assert s["held_out"]["calibration_samples"] + s["held_out"]["samples"] == manifest["calibration"]["samples_used"]
    # The artifact is the winner's: mixed precision shows as a second, 8-bit config group.
    groups = json.loads((result.output / "config.json").read_text())["quantization_config"]["config_groups"]
    assert (len(groups) == 2) is (s["winner"] == "mixed-precision")
    kept = manifest["quantization"]["high_precision_layers"]
    assert 0 < rows["mixed-precision"]["high_precision"] < manifest["quantization"]["quantized_layers"]
    assert (len(kept) > 0) is (s["winner"] == "mixed-precision")
    if kept:
        bits = {tuple(g["targets"]): g["weights"]["num_bits"] for g in groups.values()}
        assert bits == {("Linear",): 4, tuple(kept): 8}
    # Bytes: the quantized layers at the scheme's physical size, the kept layers' cost stated.
    layer_bytes = manifest["quantization"]["layer_bytes"]
    assert 0.95 <= layer_bytes["ratio_to_physical"] <= 1.05
    assert layer_bytes["high_precision_layers"] == len(kept)
    assert (layer_bytes["high_precision_extra_bytes"] > 0) is (len(kept) > 0)
    # The calibration fitness report, against the validation channel.
    report = manifest["calibration"]["fitness"]
    assert report["samples"] == 10 and report["tokens"]["max_seq_length"] == 48
    assert report["validation_drift"]["observed_prompts"] == MIN_PROMPTS


def test_the_budget_stops_the_search_after_the_first_model(run_job, tiny_model_dir, small_calibration):
    result = run_job(tiny_model_dir, *auto_args("gptq", "gptq-dampening-0.1", "mixed-precision", budget=1),
                     calibration=small_calibration)  # fmt: skip
    assert result.code == 0, result.failure
    rows = result.manifest["search"]["candidates"]
    assert [(r["name"], r["status"]) for r in rows] == [
        ("gptq", "scored"),
        ("gptq-dampening-0.1", "skipped"),
        ("mixed-precision", "skipped"),
    ]
    assert "budget" in rows[1]["reason"]
    assert result.manifest["search"]["winner"] == "gptq"


def test_w8a8_search_scores_rtn_and_smoothquant(run_job, tiny_model_dir, small_calibration):
    result = run_job(tiny_model_dir, *auto_args("rtn", "smoothquant-0.8-gptq", scheme="W8A8"),
                     calibration=small_calibration)  # fmt: skip
    assert result.code == 0, result.failure
    rows = result.manifest["search"]["candidates"]
    assert [r["status"] for r in rows] == ["scored", "scored"]
    assert rows[1]["smoothing_strength"] == 0.8
    assert result.manifest["quantization"]["layer_bytes"]["ratio_to_physical"] == pytest.approx(1.0, abs=0.05)
