"""The evaluate job's measurements: fidelity (perplexity, greedy agreement) and speed.

The pilot calls the same functions, so a pilot report and a pipeline report are measured alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.live_quality import agreement
from jobs.evaluate.fidelity import decode_outputs, greedy_outputs
from jobs.evaluate.load_test import Target, one_request, quiet_litellm, run_level
from jobs.evaluate.stats import LevelSummary, ratio, round_or_none
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.perplexity import load_model, perplexity, tokenize_validation

Log = Callable[[str], None]
PERPLEXITY_METHOD = "transformers (float32, CPU): sliding window over the validation token stream"


def requests_for(concurrency: int) -> int:
    """Measured requests at a level: enough for stable percentiles without minutes per level."""
    return max(16, 4 * concurrency)


def measure_model_fidelity(
    model_dir: Path,
    texts: Sequence[str],
    *,
    max_tokens: int,
    window: int,
    stride: int,
    prompts: Sequence[str] = (),
    greedy_tokens: int = 0,
    log: Log = print,
    label: str = "",
) -> dict[str, Any]:
    """Perplexity (and, with ``greedy_tokens``, offline greedy outputs: token ids and their text)
    of one model.

    The baseline's result is reused across the candidates of a sweep.
    """
    loaded = load_model(model_dir)
    ids = tokenize_validation(loaded.tokenizer, texts, max_tokens)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 15:
            log(f"  perplexity {label}: window {done}/{total}")
            last[0] = now

    ppl = perplexity(loaded, ids, window=window, stride=stride, progress=progress)
    greedy = greedy_outputs(loaded, prompts, greedy_tokens) if greedy_tokens and prompts else None
    greedy_text = decode_outputs(loaded, greedy) if greedy is not None else None
    del loaded
    return {"perplexity": ppl, "greedy": greedy, "greedy_text": greedy_text, "validation_tokens": len(ids)}


def preflight(target: Target, protocol: str) -> None:
    """One short request before anything is measured, so a wrong endpoint or variant, missing
    permissions or a failing server end the job with one clear reason instead of a report full
    of errors."""
    result = asyncio.run(one_request(target, "Say hello.", 1, fixed_length=False))
    if not result.ok:
        raise JobFailureError(f"cannot invoke {target.describe()} ({protocol} protocol): {result.error}")


def served_greedy_text(target: Target, prompts: Sequence[str], max_tokens: int) -> list[str]:
    """Greedy outputs as the server produces them (temperature 0), whole texts.

    Served outputs are what users see, and a server decodes far faster than transformers on a
    CPU. The texts go to the human review sample as they are; agreement compares them word by
    word (``words``), so no tokenizer is needed on the client (the pipeline's evaluate job gets
    the models' config.json alone); the offline path compares token ids.
    """
    out = []
    for prompt in prompts:
        result = asyncio.run(one_request(target, prompt, max_tokens, fixed_length=False))
        if not result.ok:
            raise JobFailureError(f"greedy generation on {target.describe()} failed: {result.error}")
        out.append(result.text)
    return out


def words(texts: Sequence[str]) -> list[list[str]]:
    """Served greedy texts as the word lists greedy agreement compares."""
    return [text.split() for text in texts]


def greedy_section(
    base: Sequence[Sequence[Any]], cand: Sequence[Sequence[Any]], method: str, unit: str = "tokens"
) -> dict[str, Any]:
    longest = max((len(x) for x in base), default=0)
    return {**agreement(base, cand), "max_new_tokens": longest, "compared_by": unit, "method": method}


def fidelity_section(base: dict[str, Any], cand: dict[str, Any], greedy: dict[str, Any] | None) -> dict[str, Any]:
    b, c = base["perplexity"], cand["perplexity"]
    if b["token_count"] != c["token_count"]:
        # Both models share a tokenizer in every scheme here; different counts mean different data.
        raise JobFailureError(
            f"baseline and candidate scored different token counts ({b['token_count']} vs {c['token_count']}): "
            "they must share a tokenizer"
        )
    return {
        "baseline_perplexity": round(b["perplexity"], 4),
        "candidate_perplexity": round(c["perplexity"], 4),
        "ppl_increase_pct": round((c["perplexity"] / b["perplexity"] - 1) * 100, 3),
        "token_count": b["token_count"],
        "validation_tokens": base["validation_tokens"],
        "method": b.get("method", PERPLEXITY_METHOD),
        "window": b["window"],
        "stride": b["stride"],
        "chunk_chars": b.get("chunk_chars"),
        "seconds": {"baseline": round(b["seconds"], 2), "candidate": round(c["seconds"], 2)},
        "greedy": greedy,
    }


def measure_performance(
    targets: Mapping[str, Target],
    *,
    levels: Sequence[int],
    max_tokens: int,
    prompts: Sequence[str],
    warmup: int | None = None,
    requests: Callable[[int], int] = requests_for,
    log: Log = print,
) -> dict[str, dict[int, LevelSummary]]:
    """Every target at every level, levels outer: variants measured back to back at each level,
    so a change of background load on a shared machine hits them alike."""
    quiet_litellm()
    out: dict[str, dict[int, LevelSummary]] = {name: {} for name in targets}
    for conc in levels:
        for name, target in targets.items():
            count = requests(conc)
            started = time.monotonic()
            summary = run_level(
                target,
                concurrency=conc,
                requests=count,
                warmup=conc if warmup is None else warmup,
                prompts=prompts,
                max_tokens=max_tokens,
            )
            out[name][conc] = summary
            log(
                f"  {name:>12} c={conc:<3} {summary.output_tokens_per_s:7.1f} tok/s  "
                f"p50 {summary.latency_p50_s:.3f} s  p95 {summary.latency_p95_s:.3f} s  "
                f"ttft {summary.ttft_p50_s:.3f} s  errors {summary.errors}/{summary.requests}  "
                f"({time.monotonic() - started:.0f} s)"
            )
    return out


def performance_section(
    measured: Mapping[str, Mapping[int, LevelSummary]] | None,
    targets: Mapping[str, Target] | None,
    *,
    reason: str | None,
    max_tokens: int,
) -> dict[str, Any]:
    if not measured or not targets:
        return {"measured": False, "reason": reason or "no serving target given (offline evaluation)"}
    import litellm  # noqa: PLC0415

    variants = {
        name: {
            "target": targets[name].describe(),
            "levels": {str(c): s.to_json() for c, s in sorted(levels.items())},
        }
        for name, levels in measured.items()
    }
    ratios = {}
    if "baseline" in measured and "candidate" in measured:
        for conc, cand in measured["candidate"].items():
            base = measured["baseline"].get(conc)
            if base is None:
                continue
            ratios[str(conc)] = {
                "p95_latency": round_or_none(ratio(cand.latency_p95_s, base.latency_p95_s), 4),
                "p50_latency": round_or_none(ratio(cand.latency_p50_s, base.latency_p50_s), 4),
                "ttft_p50": round_or_none(ratio(cand.ttft_p50_s, base.ttft_p50_s), 4),
                "throughput": round_or_none(ratio(cand.output_tokens_per_s, base.output_tokens_per_s), 4),
            }
    return {
        "measured": True,
        "reason": None,
        "client": f"litellm {getattr(litellm, 'version', None) or _dist_version('litellm')}",
        "max_tokens": max_tokens,
        "fixed_length": True,
        "warmup": "one warm-up batch per level (concurrency requests), excluded",
        "concurrency_levels": sorted({c for lv in measured.values() for c in lv}),
        "variants": variants,
        "ratios": ratios,
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(name)
    except PackageNotFoundError:
        return None
