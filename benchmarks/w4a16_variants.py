"""W4A16 recipe variants on SmolLM2-135M, side by side in one run (docs/benchmarks.md "W4A16 variants").

What the automatic recipe's candidates are made of, measured directly: each variant quantizes a
fresh copy of the source with llm-compressor (the job's own modifiers, jobs/quantize/recipes.py)
and is scored in memory on the search's held-out split of the calibration set and on the
benchmark's validation text (other pydoc topics). Variants differ in algorithm, group size,
symmetric or asymmetric scale, and the precision the model is calibrated in.

    python -m benchmarks.w4a16_variants --model DIR --out benchmarks/results/w4a16-variants.json \
        [--variants gptq-g128-fp32 ...]

Not a test; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobs.quantize import compress, families, recipes
from jobs.quantize.check import pydoc_texts
from jobs.quantize.preflight import CalibrationPlan
from jobs.quantize.search import SCORE_WINDOW, Scorer, split_held_out
from jobs.quantize.support import resolve_group_size
from jobs.sagemaker_job.perplexity import DEFAULT_STRIDE, DEFAULT_WINDOW, tokenize_validation

# name -> (candidate, scheme, group size, calibration dtype)
VARIANTS: dict[str, tuple[recipes.Candidate, str, int, str]] = {}


def _add(name: str, candidate: recipes.Candidate, scheme: str, group: int, dtype: str) -> None:
    VARIANTS[name] = (candidate, scheme, group, dtype)


# The search's own weight-only candidates (round-to-nearest is one only for 8-bit schemes).
_JOB = {c.name: c for c in recipes.candidates_for("W4A16_ASYM")}
_GPTQ, _AWQ, _ROUND = _JOB["gptq"], _JOB["awq-gptq"], _JOB["autoround"]
_RTN = recipes.Candidate(name="rtn", algorithm="rtn", cost=0.1)
_add("rtn-g128-fp32", _RTN, "W4A16_ASYM", 128, "float32")
_add("gptq-g128-bf16", _GPTQ, "W4A16_ASYM", 128, "bfloat16")
_add("gptq-g128-fp32", _GPTQ, "W4A16_ASYM", 128, "float32")
_add("gptq-g128-fp32-sym", _GPTQ, "W4A16", 128, "float32")
_add("gptq-g32-fp32", _GPTQ, "W4A16_ASYM", 32, "float32")
_add("gptq-g128-fp32-damp0.1", replace(_GPTQ, dampening=0.1), "W4A16_ASYM", 128, "float32")
_add("awq-gptq-g128-fp32", _AWQ, "W4A16_ASYM", 128, "float32")
_add("autoround-g128-fp32", _ROUND, "W4A16_ASYM", 128, "float32")
# A quarter of the job's tuning steps: what a CPU can compare within minutes rather than an hour.
_add("autoround-g128-fp32-50steps", replace(_ROUND, autoround_iters=50), "W4A16_ASYM", 128, "float32")
_add("autoround-g128-bf16", _ROUND, "W4A16_ASYM", 128, "bfloat16")
_add("autoround-g128-fp32-sym", _ROUND, "W4A16", 128, "float32")


def run_variant(name: str, model_dir: Path, tokenizer: Any, dataset: Any, *, seq_len: int, scorers: dict) -> dict:
    import torch

    candidate, scheme, group, dtype = VARIANTS[name]
    started = time.monotonic()
    model = families.load_model(model_dir, getattr(torch, dtype), None)
    model.eval()
    # The job's group-size rule: SmolLM2-135M's 576-wide inputs take 64 when 128 is asked for.
    resolution = resolve_group_size(group, families.linear_shapes(model), ignore=[], grouped=True)
    calibrate = compress.calibrate(model, tokenizer, recipes.modifiers(candidate, scheme, resolution), dataset, seq_len)
    compress.cast_dense_parameters(model, getattr(torch, dtype))
    row: dict[str, Any] = {"variant": name, "scheme": scheme, "group_size": resolution.effective, "dtype": dtype}
    row.update(candidate.settings())
    row.update({key: round(score(model), 4) for key, score in scorers.items()})
    row.update(calibrate_seconds=round(calibrate, 1), seconds=round(time.monotonic() - started, 1))
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds; no variant starts after this")
    args = parser.parse_args(argv)
    import torch
    from transformers import AutoTokenizer

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    texts, validation = pydoc_texts()
    texts = texts[: args.samples]
    calibration, held_out = split_held_out(CalibrationPlan.of_texts(texts))
    dataset = compress.tokenize(tokenizer, calibration, args.seq_len)
    window = min(SCORE_WINDOW, args.seq_len)
    scorers = {
        "held_out_perplexity": Scorer(tokenizer, tokenize_validation(tokenizer, held_out, 8192), window),
        # Scorer's stride is window // 2: the benchmark's 512 / 256.
        "validation_perplexity": Scorer(
            tokenizer, tokenize_validation(tokenizer, [validation], args.eval_tokens), DEFAULT_WINDOW
        ),
    }
    assert DEFAULT_WINDOW // 2 == DEFAULT_STRIDE
    source = families.load_model(args.model, torch.bfloat16, None).to("cuda" if torch.cuda.is_available() else "cpu")
    baseline = {key: round(score(source), 4) for key, score in scorers.items()}
    del source
    result: dict[str, Any] = {
        "benchmark": "w4a16-variants",
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "settings": {"samples": len(texts), "calibration_samples": len(calibration.texts), "seq_len": args.seq_len,
                     "held_out_samples": len(held_out), "eval_tokens": args.eval_tokens},
        "baseline_bf16": baseline,
        "rows": [],
    }  # fmt: skip
    print(json.dumps(result), flush=True)
    for name in args.variants:
        if time.monotonic() - started > args.deadline:
            result["rows"].append({"variant": name, "status": "not run: deadline"})
            continue
        try:
            row = run_variant(name, args.model, tokenizer, dataset, seq_len=args.seq_len, scorers=scorers)
            for key, value in baseline.items():
                row[key.replace("perplexity", "increase_pct")] = round(100 * (row[key] / value - 1), 2)
        except Exception as exc:  # one variant failing must not lose the others
            row = {"variant": name, "status": f"failed: {type(exc).__name__}: {exc}"[:400]}
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
