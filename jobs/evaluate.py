"""Evaluate a quantized candidate against its baseline: fidelity, speed, memory, cost, gate.

Runs as a SageMaker job (evaluate container) and as a library of the pilot (jobs/pilot.py).
SageMaker conventions (docs/evaluate.md has the exact contract):
- hyperparameters as ``--name value`` arguments or from
  ``$SM_INPUT_CONFIG_DIR/hyperparameters.json``; arguments win;
- channels ``SM_CHANNEL_BASELINE`` and ``SM_CHANNEL_CANDIDATE`` (HF / compressed-tensors model
  directories) and ``SM_CHANNEL_VALIDATION`` (JSONL or .txt files);
- report.json, report.md, performance.png and gate.json (the bounded verdict the pipeline
  reads, jobs/evaluate_gate.py) to ``--output-dir`` (default ``$SM_OUTPUT_DATA_DIR``, else
  ``$SM_MODEL_DIR``);
- a bad input or a crash writes one reason to ``--failure-dir`` (default ``$SM_OUTPUT_DIR``) and
  exits non-zero: to ``message`` when it runs as a SageMaker processing job (what SageMaker
  shows as the job's ExitMessage), to ``failure`` otherwise (a training job's FailureReason);
  A failed *gate* is not a failed job: the job succeeds and gate.json says ``passed: false``,
  so the pipeline's Choice state decides.

Speed is measured only when serving targets are given (local OpenAI-compatible servers or
SageMaker endpoints/variants); otherwise the evaluation is offline (fidelity) and the gate says
that speed was not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from jobs.evaluate_cost import PriceTable, PriceTableError, cost_section, smallest_fitting_instance
from jobs.evaluate_fidelity import (
    DEFAULT_PROMPTS,
    DEFAULT_STRIDE,
    DEFAULT_WINDOW,
    agreement,
    greedy_outputs,
    load_model,
    perplexity,
    read_validation_texts,
    tokenize_validation,
    weight_bytes,
)
from jobs.evaluate_gate import GATE_FILE, GateConfigError, Thresholds, Workload, evaluate_gate, gate_json, pipeline_gate
from jobs.evaluate_report import plot, render_markdown
from jobs.evaluate_stats import LevelSummary, ratio, round_or_none
from jobs.failure import JobFailureError, is_processing_job, write_failure
from jobs.load_test import DEFAULT_MAX_TOKENS, Target, one_request, quiet_litellm, run_level

REPORT_VERSION = 1
DEFAULT_CONCURRENCY = (1, 4, 16)
DEFAULT_VALIDATION_TOKENS = 8192
DEFAULT_GREEDY_TOKENS = 32
# The local CPU measurement is priced as the SageMaker CPU instance nearest to a 2-core machine.
DEFAULT_MEASURED_INSTANCE = "ml.m5.large"
DEFAULT_CONTEXT_TOKENS = 4096
Log = Callable[[str], None]


def requests_for(concurrency: int) -> int:
    """Measured requests at a level: enough for stable percentiles without minutes per level."""
    return max(16, 4 * concurrency)


# --------------------------------------------------------------------------------------------
# Model facts


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JobFailureError(f"{model_dir} is not a model directory (config.json: {exc})") from None
    if not isinstance(data, dict):
        raise JobFailureError(f"{path} must hold a JSON object")
    return data


def detect_scheme(config: Mapping[str, Any]) -> str:
    """The quantization scheme named the way the quantize job names it, from config.json.

    Read from the model itself (compressed-tensors ``quantization_config``), not from a
    manifest, because the pipeline hands the job only the artifact directory.
    """
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
        return {"bfloat16": "BF16", "float16": "FP16", "float32": "FP32"}.get(dtype, dtype.upper())
    groups = qc.get("config_groups") or {}
    if not groups:
        return str(qc.get("quant_method", "quantized")).upper()
    group = next(iter(groups.values()))
    weights = group.get("weights") or {}
    acts = group.get("input_activations")
    bits = int(weights.get("num_bits", 0))
    if weights.get("type") == "float" and bits == 8:
        return "FP8_DYNAMIC" if acts else "FP8"
    if acts:
        return f"W{bits}A{int(acts.get('num_bits', 16))}"
    suffix = "" if weights.get("symmetric", True) else "_ASYM"
    return f"W{bits}A16{suffix}"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    scheme: str
    weight_bytes: int
    config: dict[str, Any]

    @classmethod
    def read(cls, path: Path, scheme: str | None = None) -> ModelInfo:
        if not path.is_dir():
            raise JobFailureError(f"model directory {path} does not exist")
        config = read_config(path)
        try:
            size = weight_bytes(path)
        except ValueError as exc:
            raise JobFailureError(str(exc)) from None
        return cls(path, scheme or detect_scheme(config), size, config)


# --------------------------------------------------------------------------------------------
# Measurements


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
    """Perplexity (and, with ``greedy_tokens``, offline greedy outputs) of one model.

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
    del loaded
    return {"perplexity": ppl, "greedy": greedy, "validation_tokens": len(ids)}


def served_greedy(target: Target, prompts: Sequence[str], max_tokens: int, tokenizer: Any) -> list[list[int]]:
    """Greedy outputs as the server produces them (temperature 0), as token ids.

    Served outputs are what users see, and a server decodes far faster than transformers on a
    CPU; the offline path is kept for schemes that cannot be served.
    """
    out = []
    for prompt in prompts:
        result = asyncio.run(one_request(target, prompt, max_tokens, fixed_length=False))
        if not result.ok:
            raise JobFailureError(f"greedy generation on {target.describe()} failed: {result.error}")
        out.append(list(tokenizer(result.text, add_special_tokens=False)["input_ids"]))
    return out


def greedy_section(base: Sequence[Sequence[int]], cand: Sequence[Sequence[int]], method: str) -> dict[str, Any]:
    return {**agreement(base, cand), "max_new_tokens": max((len(x) for x in base), default=0), "method": method}


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
        "window": b["window"],
        "stride": b["stride"],
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


# --------------------------------------------------------------------------------------------
# Report assembly


def build_report(
    *,
    models: Mapping[str, ModelInfo],
    fidelity: dict[str, Any] | None,
    performance: dict[str, Any],
    server_memory: Mapping[str, dict[str, Any] | None],
    thresholds: Thresholds,
    workload: Workload,
    prices: PriceTable,
    measured_instance_type: str,
    measured_note: str,
    context_tokens: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    fits = {
        name: smallest_fitting_instance(
            prices,
            scheme=info.scheme,
            weight_bytes=info.weight_bytes,
            config=info.config,
            concurrency=workload.concurrency,
            context_tokens=context_tokens,
        )
        for name, info in models.items()
    }
    tput: dict[str, dict[int, float]] = {}
    if performance.get("measured"):
        for name, data in performance["variants"].items():
            tput[name] = {
                int(c): float(level["output_tokens_per_s"] or 0.0)
                for c, level in data["levels"].items()
                if level.get("output_tokens_per_s") is not None
            }
    memory: dict[str, Any] = {
        "variants": {
            name: {
                "weight_bytes": info.weight_bytes,
                "server": server_memory.get(name),
            }
            for name, info in models.items()
        },
    }
    if "baseline" in models and "candidate" in models:
        memory["weight_bytes_ratio"] = round(models["candidate"].weight_bytes / models["baseline"].weight_bytes, 4)
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": {name: {"path": str(info.path), "scheme": info.scheme} for name, info in models.items()},
        "fidelity": fidelity,
        "performance": performance,
        "memory": memory,
        "cost": cost_section(
            prices,
            measured_instance_type=measured_instance_type,
            measured_note=measured_note,
            throughput_by_variant=tput,
            fits=fits,
            workload_concurrency=workload.concurrency,
        ),
        "gate": evaluate_gate(fidelity, performance, thresholds, workload),
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpus": os.cpu_count(),
        },
    }
    if extra:
        report.update(extra)
    return report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_report(report: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    png = output_dir / "performance.png"
    report["plot"] = png.name if plot(report, png) else None
    paths = {"json": output_dir / "report.json", "md": output_dir / "report.md", "gate": output_dir / GATE_FILE}
    paths["json"].write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n")
    paths["gate"].write_bytes(gate_json(pipeline_gate(report["gate"])))
    paths["md"].write_text(render_markdown(report))
    if report["plot"]:
        paths["png"] = png
    return paths


# --------------------------------------------------------------------------------------------
# The job


class _Parser(argparse.ArgumentParser):
    """Argument errors become job failures, so SageMaker shows them as the FailureReason."""

    def error(self, message: str) -> NoReturn:
        raise JobFailureError(f"invalid argument: {message}")


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = _Parser(description="Evaluate a quantized candidate against its baseline (SageMaker job)")
    p.add_argument(
        "--baseline-dir", type=Path, default=Path(env.get("SM_CHANNEL_BASELINE", "/opt/ml/input/data/baseline"))
    )
    p.add_argument(
        "--candidate-dir", type=Path, default=Path(env.get("SM_CHANNEL_CANDIDATE", "/opt/ml/input/data/candidate"))
    )
    p.add_argument(
        "--validation", type=Path, default=Path(env.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"))
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path(env.get("SM_OUTPUT_DATA_DIR") or env.get("SM_MODEL_DIR") or "/opt/ml/output/data"),
    )
    p.add_argument("--failure-dir", type=Path, default=Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output")))
    p.add_argument("--baseline-scheme", help="override the scheme read from config.json (naming only)")
    p.add_argument("--candidate-scheme", help="override the scheme read from config.json (naming only)")
    p.add_argument("--max-validation-tokens", type=int, default=DEFAULT_VALIDATION_TOKENS)
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    p.add_argument("--stride", type=int, default=DEFAULT_STRIDE)
    p.add_argument("--greedy-tokens", type=int, default=DEFAULT_GREEDY_TOKENS)
    # Serving targets (speed); none given = offline evaluation.
    p.add_argument("--baseline-url", help="OpenAI-compatible base URL of the baseline (http://host:port/v1)")
    p.add_argument("--baseline-served-name", default="baseline")
    p.add_argument("--candidate-url", help="OpenAI-compatible base URL of the candidate")
    p.add_argument("--candidate-served-name", default="candidate")
    p.add_argument("--baseline-endpoint", help="SageMaker endpoint serving the baseline")
    p.add_argument("--candidate-endpoint", help="SageMaker endpoint serving the candidate")
    p.add_argument("--baseline-variant", help="production variant of the baseline (TargetVariant)")
    p.add_argument("--candidate-variant", help="production variant of the candidate (TargetVariant)")
    p.add_argument("--region", default=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
    p.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)), help="levels, e.g. 1,4,16")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="output tokens per request")
    # Gate and workload.
    defaults = Thresholds()
    p.add_argument("--max-ppl-increase-pct", type=float, default=defaults.max_ppl_increase_pct)
    p.add_argument("--max-p95-latency-ratio", type=float, default=defaults.max_p95_latency_ratio)
    p.add_argument("--min-throughput-ratio", type=float, default=defaults.min_throughput_ratio)
    p.add_argument("--max-error-rate", type=float, default=defaults.max_error_rate)
    p.add_argument("--workload-concurrency", type=int, default=Workload().concurrency)
    p.add_argument("--p95-objective-s", type=float, default=None)
    p.add_argument("--measured-instance-type", default=DEFAULT_MEASURED_INSTANCE)
    p.add_argument("--context-tokens", type=int, default=DEFAULT_CONTEXT_TOKENS, help="per sequence, for sizing")
    return p


def hyperparameter_argv(config_dir: Path) -> list[str]:
    """``--key value`` pairs from SageMaker's hyperparameters.json (values arrive as strings)."""
    path = config_dir / "hyperparameters.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise JobFailureError(f"{path} is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise JobFailureError(f"{path} must hold a JSON object")
    argv: list[str] = []
    for key, value in data.items():
        if key.startswith("sagemaker_"):
            continue  # the SDK's own bookkeeping entries
        argv += [f"--{key.replace('_', '-')}", str(value).strip('"')]
    return argv


def parse_levels(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in str(text).replace(",", " ").split()})
    except ValueError:
        raise JobFailureError(f"concurrency levels must be integers, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise JobFailureError(f"concurrency levels must be >= 1, got {text!r}")
    return levels


def targets_from_args(args: argparse.Namespace) -> dict[str, Target] | None:
    targets = {}
    for variant in ("baseline", "candidate"):
        url = getattr(args, f"{variant}_url")
        endpoint = getattr(args, f"{variant}_endpoint")
        if url and endpoint:
            raise JobFailureError(f"give either --{variant}-url or --{variant}-endpoint, not both")
        if url:
            targets[variant] = Target(variant, "openai", getattr(args, f"{variant}_served_name"), api_base=url)
        elif endpoint:
            targets[variant] = Target(
                variant, "sagemaker", endpoint, target_variant=getattr(args, f"{variant}_variant"), region=args.region
            )
    if not targets:
        return None
    if len(targets) != 2:
        raise JobFailureError("speed needs both a baseline and a candidate target (or neither, for offline)")
    return targets


def run_job(args: argparse.Namespace, log: Log = print) -> dict[str, Any]:
    thresholds = Thresholds(
        max_ppl_increase_pct=args.max_ppl_increase_pct,
        max_p95_latency_ratio=args.max_p95_latency_ratio,
        min_throughput_ratio=args.min_throughput_ratio,
        max_error_rate=args.max_error_rate,
    )
    levels = parse_levels(args.concurrency)
    workload = Workload(args.workload_concurrency, args.p95_objective_s)
    try:
        thresholds.validate()
        workload.validate(levels)
        prices = PriceTable.load()
        prices.price(args.measured_instance_type)
    except (GateConfigError, PriceTableError) as exc:
        raise JobFailureError(str(exc)) from None
    targets = targets_from_args(args)
    models = {
        "baseline": ModelInfo.read(args.baseline_dir, args.baseline_scheme),
        "candidate": ModelInfo.read(args.candidate_dir, args.candidate_scheme),
    }
    try:
        texts = read_validation_texts(args.validation)
    except (OSError, ValueError) as exc:
        raise JobFailureError(f"validation data: {exc}") from None

    log(f"fidelity: perplexity over up to {args.max_validation_tokens} tokens")
    common: dict[str, Any] = {
        "max_tokens": args.max_validation_tokens,
        "window": args.window,
        "stride": args.stride,
        "log": log,
    }
    offline_greedy = 0 if targets else args.greedy_tokens
    base = measure_model_fidelity(
        models["baseline"].path,
        texts,
        label="baseline",
        prompts=DEFAULT_PROMPTS,
        greedy_tokens=offline_greedy,
        **common,
    )
    cand = measure_model_fidelity(
        models["candidate"].path,
        texts,
        label="candidate",
        prompts=DEFAULT_PROMPTS,
        greedy_tokens=offline_greedy,
        **common,
    )
    measured = None
    if targets:
        from transformers import AutoTokenizer  # noqa: PLC0415

        quiet_litellm()
        tokenizer = AutoTokenizer.from_pretrained(str(models["baseline"].path))
        pair = [
            served_greedy(targets[v], DEFAULT_PROMPTS, args.greedy_tokens, tokenizer) for v in ("baseline", "candidate")
        ]
        greedy = greedy_section(pair[0], pair[1], "served (temperature 0)")
        log(f"performance: concurrency {levels}, {args.max_tokens} output tokens per request")
        measured = measure_performance(
            targets, levels=levels, max_tokens=args.max_tokens, prompts=DEFAULT_PROMPTS, log=log
        )
    else:
        greedy = greedy_section(base["greedy"], cand["greedy"], "offline (transformers, float32)")
    fidelity = fidelity_section(base, cand, greedy)
    report = build_report(
        models=models,
        fidelity=fidelity,
        performance=performance_section(measured, targets, reason=None, max_tokens=args.max_tokens),
        server_memory={},
        thresholds=thresholds,
        workload=workload,
        prices=prices,
        measured_instance_type=args.measured_instance_type,
        measured_note="the throughput measured against the given targets, priced at this instance type's rate",
        context_tokens=args.context_tokens,
    )
    write_report(report, args.output_dir)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    config_dir = Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    failure_dir = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    # The pipeline runs this job as a processing job: its reason belongs in /opt/ml/output/message.
    processing = is_processing_job()
    try:
        cli = list(sys.argv[1:] if argv is None else argv)
        if cli[:1] == ["train"]:
            cli = cli[1:]  # SageMaker starts training containers as `<entrypoint> train`
        args = parser.parse_args(hyperparameter_argv(config_dir) + cli)
        failure_dir = args.failure_dir
        report = run_job(args)
    except JobFailureError as exc:
        write_failure(str(exc), failure_dir, processing=processing)
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        traceback.print_exc()
        write_failure(f"internal error: {type(exc).__name__}: {exc}", failure_dir, processing=processing)
        return 2
    gate = report["gate"]
    fid = report["fidelity"]
    # One line per figure, in the form SageMaker metric definitions match (name=value).
    print(f"ppl_increase_pct={fid['ppl_increase_pct']}")
    print(f"gate_passed={int(gate['passed'])}")
    print(f"gate: {'PASSED' if gate['passed'] else 'FAILED'}")
    for reason in gate["reasons"]:
        print(f"  {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
