"""The automatic recipe: try candidate recipes within a time budget, keep the best on held-out
calibration text (docs/quantize.md "Automatic recipe").

1. The calibration samples are split: every ``HELD_OUT_EVERY``-th sample (at least
   ``MIN_HELD_OUT``) is held out for scoring, the rest calibrate. Only the calibration channel
   is read for this: the validation set, which the evaluate job and the gate judge the model on,
   is never seen by the search.
2. The source model is scored on the held-out text (the reference), and, when the
   mixed-precision candidate may run, each quantized layer's sensitivity is measured
   (jobs/quantize/sensitivity.py).
3. The candidates (jobs/quantize/recipes.py) run one after the other, each on a fresh copy of
   the source, and are scored with the project's one perplexity on the held-out text. A
   candidate starts only if its estimated time (its cost x the measured time of one GPTQ run,
   once any calibrating candidate has run) ends within the budget (the first that produces a
   model always runs: the job publishes one), keeping room for the
   mixed-precision candidate, which runs last: the best recipe so far with its most sensitive
   units kept at 8 bits (weight-only schemes) or unquantized (8-bit schemes), within
   ``sensitivity.MIXED_BYTE_BUDGET`` extra bytes.
4. Whenever a candidate beats the best so far it is saved into the staging directory, so the
   artifact is exactly the model that was scored; the manifest records every candidate (its
   settings, held-out perplexity, time, or why it was skipped or failed) and why the winner won.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jobs.quantize import compress, recipes, sensitivity
from jobs.quantize.manifest import Prepared
from jobs.quantize.preflight import CalibrationPlan, Paths
from jobs.quantize.support import Hyperparameters
from jobs.sagemaker_job import perplexity as perplexity_module
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.perplexity import LoadedModel, perplexity

LOG = logging.getLogger("quantize")

HELD_OUT_EVERY = 8  # one sample in eight is held out for scoring
MIN_HELD_OUT = 2
# Held-out tokens scored per candidate: on a CPU few enough to stay cheap (a second or two per
# candidate for 135M parameters), on a GPU more, so that small differences rank reliably.
SCORE_TOKENS_CPU = 1024
SCORE_TOKENS_GPU = 8192
SCORE_WINDOW = 512


def split_held_out(plan: CalibrationPlan) -> tuple[CalibrationPlan, list[str]]:
    """(the plan of the samples that calibrate, the held-out texts that score)."""
    count = len(plan.texts)
    held = max(MIN_HELD_OUT, count // HELD_OUT_EVERY)
    if count < held + 1:
        raise JobFailureError(
            f"recipe auto needs at least {MIN_HELD_OUT + 1} calibration samples ({MIN_HELD_OUT} are held out to "
            f"score the candidates); got {count}"
        )
    step = count / held
    held_indices = {min(count - 1, int((i + 1) * step) - 1) for i in range(held)}
    keep = [i for i in range(count) if i not in held_indices]
    calibration = replace(
        plan,
        texts=[plan.texts[i] for i in keep],
        templated=[plan.templated[i] for i in keep],
        contents=[plan.contents[i] for i in keep] if plan.contents else [],
    )
    return calibration, [plan.texts[i] for i in sorted(held_indices)]


@dataclass
class Scorer:
    """Perplexity of a model in memory on the held-out token stream."""

    tokenizer: Any
    token_ids: list[int]
    window: int

    def __call__(self, model: Any) -> float:
        device = _input_device(model)
        stride = max(1, self.window // 2)
        loaded = LoadedModel(model, self.tokenizer, 0.0)
        return float(perplexity(loaded, self.token_ids, window=self.window, stride=stride, device=device)["perplexity"])


def _input_device(model: Any) -> Any:
    """Where the model's inputs go: the embedding's execution device (llm-compressor leaves the
    model offloaded to CPU with GPU execution after a sequential run)."""
    embedding = model.get_input_embeddings()
    try:
        from compressed_tensors.offload import get_execution_device  # noqa: PLC0415

        return get_execution_device(embedding)
    except (ImportError, AttributeError, ValueError, RuntimeError):
        return next(embedding.parameters()).device


@dataclass
class Search:
    hp: Hyperparameters
    paths: Paths
    prepared: Prepared
    staging: Path
    dataset: Any
    scorer: Scorer
    started: float = field(default_factory=time.monotonic)
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: tuple[float, recipes.Candidate] | None = None
    unit_seconds: float | None = None  # measured seconds of one GPTQ-cost unit
    load_dtype: Any = None
    save_seconds: float = 0.0

    @property
    def deadline(self) -> float:
        return self.started + self.hp.search_budget_seconds

    def allowed(self, name: str) -> bool:
        return not self.hp.search_candidates or name in self.hp.search_candidates

    def estimate(self, candidate: recipes.Candidate) -> float | None:
        return None if self.unit_seconds is None else candidate.cost * self.unit_seconds

    def fits(self, candidate: recipes.Candidate, reserve: float) -> str | None:
        """None if ``candidate`` may start now; else why not. Until one candidate has produced a
        model the next always starts: the job must publish one, budget or not."""
        if self.best is None:
            return None
        estimate = self.estimate(candidate)
        left = self.deadline - time.monotonic()
        if estimate is None:
            return None if left > 0 else "the time budget is spent"
        if estimate + reserve > left:
            return (
                f"estimated {estimate:.0f} s (+{reserve:.0f} s kept for {recipes.MIXED}) exceeds the "
                f"{max(0.0, left):.0f} s left of the {self.hp.search_budget_seconds} s budget"
            )
        return None

    def run(self, candidate: recipes.Candidate) -> None:
        """Quantize a fresh copy of the source with ``candidate``, score it, keep it if best."""
        started = time.monotonic()
        row: dict[str, Any] = {"name": candidate.name, "algorithm": candidate.algorithm, **candidate.settings()}
        try:
            model, self.load_dtype, load_seconds = compress.load_for_calibration(
                self.paths, self.prepared.source_dtype, self.hp.seed, self.prepared.family
            )
            recipe = recipes.modifiers(candidate, self.hp.scheme, self.prepared.resolution)
            calibrate_seconds = compress.calibrate(
                model, self.prepared.tokenizer, recipe, self.dataset, self.hp.max_seq_length
            )
            # AutoRound leaves its tuned weights in bf16 on a CPU; score in one precision.
            compress.cast_dense_parameters(model, self.load_dtype)
            score = self.scorer(model)
        except Exception as exc:  # one candidate failing must not end the search
            LOG.exception("candidate %s failed", candidate.name)
            self.rows.append({**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]})
            return
        row.update(
            status="scored",
            held_out_perplexity=round(score, 4),
            load_seconds=round(load_seconds, 2),
            calibrate_seconds=round(calibrate_seconds, 2),
        )
        if self.best is None or score < self.best[0]:
            self.save(model)
            self.best = (score, candidate)
        del model
        seconds = time.monotonic() - started
        row["seconds"] = round(seconds, 2)
        if candidate.cost >= 1.0:  # rtn's time says nothing about a calibrating recipe's
            self.unit_seconds = max(self.unit_seconds or 0.0, seconds / candidate.cost)
        LOG.info("candidate %s: held-out perplexity %.4f in %.1f s", candidate.name, score, seconds)
        self.rows.append(row)

    def save(self, model: Any) -> None:
        for child in self.staging.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.save_seconds += compress.save_model(
            model,
            self.staging,
            source_dtype=self.prepared.source_dtype,
            tokenizer=self.prepared.tokenizer,
            paths=self.paths,
            family=self.prepared.family,
            rank=None,
        )

    def skip(self, candidate: recipes.Candidate, reason: str) -> None:
        LOG.info("candidate %s skipped: %s", candidate.name, reason)
        self.rows.append(
            {"name": candidate.name, "algorithm": candidate.algorithm, "status": "skipped", "reason": reason}
        )


def _baseline(search: Search) -> float:
    """The source's held-out perplexity (the reference every candidate's increase is against)."""
    model, _, _ = compress.load_for_calibration(
        search.paths, search.prepared.source_dtype, search.hp.seed, search.prepared.family
    )
    score = search.scorer(model)
    del model
    return score


def _sensitivity(search: Search) -> dict[str, float]:
    """Each quantized unit's sensitivity on the source (only when mixed precision may run)."""
    model, _, _ = compress.load_for_calibration(
        search.paths, search.prepared.source_dtype, search.hp.seed, search.prepared.family
    )
    resolution = search.prepared.resolution
    tokens = [t for ids in search.dataset["input_ids"] for t in ids][: sensitivity.SENSITIVITY_TOKENS]
    errors = sensitivity.unit_errors(model, tokens, search.hp.scheme, resolution.ignore, resolution.effective)
    del model
    return errors


def _mixed_candidate(search: Search) -> tuple[recipes.Candidate | None, dict[str, Any]]:
    """The best recipe so far with its most sensitive units kept at higher precision."""
    assert search.best is not None
    errors = _sensitivity(search)
    scheme, resolution = search.hp.scheme, search.prepared.resolution
    ranked = sensitivity.units(
        errors,
        search.prepared.layers,
        scheme,
        recipes.high_precision_scheme(scheme),
        resolution.effective,
    )
    quantized_bytes = sum(u.scheme_bytes for u in ranked)
    chosen = sensitivity.choose(ranked, quantized_bytes)
    detail = {
        "kept_at": recipes.high_precision_scheme(scheme) or "unquantized",
        "error": "loss increase on calibration tokens with the unit alone rounded to the scheme",
        "units": [{"unit": u.name, "error": round(u.error, 6), "extra_bytes": u.extra_bytes} for u in chosen],
        "estimated_extra_bytes": sum(u.extra_bytes for u in chosen),
        "byte_budget_pct": 100 * sensitivity.MIXED_BYTE_BUDGET,
        "most_sensitive": [{"unit": u.name, "error": round(u.error, 6)} for u in ranked[:10]],
    }
    if not chosen:
        return None, detail
    layers = tuple(name for unit in chosen for name in unit.layers)
    return recipes.mixed(search.best[1], layers), detail


def _run_mixed(search: Search) -> dict[str, Any] | None:
    """The mixed-precision candidate, last. Its estimate (the best's time, x 1.1 for the
    sensitivity pass) must fit before the sensitivity pass runs: a spent budget costs no
    Fisher pass."""
    assert search.best is not None
    base = search.best[1]
    reason = search.fits(recipes.mixed(base, ()), 0.0)
    if reason:
        search.skip(replace(base, name=recipes.MIXED), reason)
        return None
    kept, detail = _mixed_candidate(search)
    if kept is None:
        search.skip(replace(base, name=recipes.MIXED), "no sensitive unit fits the byte budget")
    else:
        search.run(kept)
    return detail


def search_into(*, hp: Hyperparameters, paths: Paths, staging: Path, prepared: Prepared) -> dict[str, Any]:
    """Run the search; the winner is left in ``staging``. Returns the job's stats plus ``search``."""
    import torch  # noqa: PLC0415

    calibration, held_out = split_held_out(prepared.plan)
    tokenizer = prepared.tokenizer
    dataset = compress.tokenize(tokenizer, calibration, hp.max_seq_length)
    window = min(SCORE_WINDOW, hp.max_seq_length)
    score_tokens = SCORE_TOKENS_GPU if torch.cuda.is_available() else SCORE_TOKENS_CPU
    scorer = Scorer(tokenizer, perplexity_module.tokenize_validation(tokenizer, held_out, score_tokens), window)
    search = Search(hp=hp, paths=paths, prepared=prepared, staging=staging, dataset=dataset, scorer=scorer)
    want_mixed = search.allowed(recipes.MIXED)
    baseline = _baseline(search)
    for candidate in recipes.candidates_for(hp.scheme):
        if not search.allowed(candidate.name):
            continue
        mixed_reserve = (
            (search.estimate(recipes.mixed(search.best[1], ())) or 0.0) if want_mixed and search.best else 0.0
        )
        reason = search.fits(candidate, mixed_reserve)
        search.skip(candidate, reason) if reason else search.run(candidate)
    mixed_detail = _run_mixed(search) if want_mixed and search.best is not None else None
    if search.best is None:
        failures = "; ".join(f"{r['name']}: {r['reason']}" for r in search.rows)
        raise JobFailureError(f"recipe auto: no candidate recipe produced a model ({failures})")
    winner = search.best[1]
    elapsed = time.monotonic() - search.started
    for row in search.rows:
        if "held_out_perplexity" in row:
            row["held_out_increase_pct"] = round(100 * (row["held_out_perplexity"] / baseline - 1), 3)
    tokens = sum(len(ids) for ids in dataset["input_ids"])
    return {
        # Summed over the candidates (and every save of a new best).
        "load_seconds": round(sum(r.get("load_seconds", 0.0) for r in search.rows), 3),
        "calibrate_seconds": round(sum(r.get("calibrate_seconds", 0.0) for r in search.rows), 3),
        "save_seconds": round(search.save_seconds, 3),
        "calibration_tokens": tokens,
        "calibration_dtype": str(search.load_dtype).removeprefix("torch."),
        "peak_gpu_memory_bytes": int(torch.cuda.max_memory_reserved()) if torch.cuda.is_available() else None,
        "rank_samples": len(dataset),
        "high_precision": winner.high_precision,
        "search": {
            "budget_seconds": hp.search_budget_seconds,
            "seconds": round(elapsed, 1),
            "held_out": {
                "samples": len(held_out),
                "calibration_samples": len(calibration.texts),
                "tokens": len(scorer.token_ids),
                "window": window,
                "source": "calibration channel (every sample in "
                f"{HELD_OUT_EVERY} held out); the validation set is never read for scoring",
            },
            "source_held_out_perplexity": round(baseline, 4),
            "candidates": search.rows,
            "mixed_precision": mixed_detail,
            "winner": winner.name,
            "winner_algorithm": winner.algorithm,
            "why": _why(search.rows, winner.name, baseline),
        },
    }


def _why(rows: list[dict[str, Any]], winner: str, baseline: float) -> str:
    scored = sorted((r for r in rows if r["status"] == "scored"), key=lambda r: r["held_out_perplexity"])
    best = scored[0]
    text = (
        f"{winner} has the lowest held-out perplexity, {best['held_out_perplexity']:.4f} "
        f"({100 * (best['held_out_perplexity'] / baseline - 1):+.2f} % over the source's {baseline:.4f}), "
        f"of {len(scored)} scored candidate(s)"
    )
    if len(scored) > 1:
        text += f"; next best {scored[1]['name']} at {scored[1]['held_out_perplexity']:.4f}"
    skipped = [r["name"] for r in rows if r["status"] != "scored"]
    if skipped:
        text += f"; not scored: {', '.join(skipped)}"
    return text
