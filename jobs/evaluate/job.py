"""Evaluate a quantized candidate against its baseline: fidelity, speed, memory, cost, gate.

Runs as a SageMaker job (evaluate container) and as a library of the pilot (jobs/pilot/).
SageMaker conventions (docs/evaluate.md has the exact contract):
- hyperparameters as ``--name value`` arguments or from
  ``$SM_INPUT_CONFIG_DIR/hyperparameters.json``; arguments win;
- channels ``SM_CHANNEL_BASELINE`` and ``SM_CHANNEL_CANDIDATE`` (HF / compressed-tensors model
  directories) and ``SM_CHANNEL_VALIDATION`` (JSONL or .txt files);
- report.json, report.md, performance.png and gate.json (the bounded verdict the pipeline
  reads, jobs/evaluate/gate.py), and the human review sample review.json with its blind A/B
  page review.html (jobs/evaluate/review.py), to ``--output-dir`` (default
  ``$SM_OUTPUT_DATA_DIR``, else ``$SM_MODEL_DIR``);
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
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from contracts.serving_hardware import expected_kernel
from jobs.evaluate import measure
from jobs.evaluate.assemble import build_report, write_report
from jobs.evaluate.cost import PriceTable, PriceTableError
from jobs.evaluate.engine_fidelity import DEFAULT_CHUNK_CHARS, engine_fidelity
from jobs.evaluate.fidelity import DEFAULT_PROMPTS
from jobs.evaluate.gate import GateConfigError, Thresholds, Workload
from jobs.evaluate.load_test import DEFAULT_MAX_TOKENS, Target, quiet_litellm
from jobs.evaluate.models import ModelInfo, manifest_sizes
from jobs.evaluate.review import build_review
from jobs.sagemaker_job import records
from jobs.sagemaker_job.failure import JobFailureError, is_processing_job, write_failure
from jobs.sagemaker_job.hyperparameters import hyperparameter_argv, strip_train
from jobs.sagemaker_job.perplexity import DEFAULT_STRIDE, DEFAULT_WINDOW

DEFAULT_CONCURRENCY = (1, 4, 16)


DEFAULT_VALIDATION_TOKENS = 8192


DEFAULT_GREEDY_TOKENS = 32


# The local CPU measurement is priced as the SageMaker CPU instance nearest to a 2-core machine.
DEFAULT_MEASURED_INSTANCE = "ml.m5.large"


DEFAULT_CONTEXT_TOKENS = 4096

FIDELITY_SOURCES = ("engine", "transformers")


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
    p.add_argument(
        "--manifest-dir",
        type=Path,
        help="the quantize manifest: model sizes where the model directories hold config.json alone",
    )
    p.add_argument("--baseline-scheme", help="override the scheme read from config.json (naming only)")
    p.add_argument("--candidate-scheme", help="override the scheme read from config.json (naming only)")
    p.add_argument("--max-validation-tokens", type=int, default=DEFAULT_VALIDATION_TOKENS)
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    p.add_argument("--stride", type=int, default=DEFAULT_STRIDE)
    p.add_argument("--greedy-tokens", type=int, default=DEFAULT_GREEDY_TOKENS)
    p.add_argument(
        "--fidelity",
        choices=FIDELITY_SOURCES,
        help="perplexity from the serving engine's prompt log-probabilities (default with targets) "
        "or from transformers on this machine (default offline)",
    )
    p.add_argument("--chunk-chars", type=int, default=DEFAULT_CHUNK_CHARS, help="engine perplexity: text per prompt")
    p.add_argument(
        "--serving-protocol",
        choices=("lmi",),
        default="lmi",
        help="request shape of SageMaker targets (LMI's schema; OpenAI-compatible URLs speak vLLM's)",
    )
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


def check_settings(args: argparse.Namespace) -> tuple[Thresholds, Workload, list[int], PriceTable]:
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
    return thresholds, workload, levels, prices


def read_models(args: argparse.Namespace) -> dict[str, ModelInfo]:
    sizes: dict[str, int] = manifest_sizes(args.manifest_dir) if args.manifest_dir else {}
    return {
        "baseline": ModelInfo.read(args.baseline_dir, args.baseline_scheme, sizes.get("baseline")),
        "candidate": ModelInfo.read(args.candidate_dir, args.candidate_scheme, sizes.get("candidate")),
    }


def fidelity_source(args: argparse.Namespace, targets: dict[str, Target] | None) -> str:
    source = args.fidelity or ("engine" if targets else "transformers")
    if source == "engine" and not targets:
        raise JobFailureError("--fidelity engine needs serving targets for both variants")
    return str(source)


def transformers_fidelity(
    args: argparse.Namespace, models: dict[str, ModelInfo], texts: list[str], *, greedy: bool, log: measure.Log
) -> dict[str, dict[str, Any]]:
    log(f"fidelity: perplexity (transformers, float32) over up to {args.max_validation_tokens} tokens")
    return {
        name: measure.measure_model_fidelity(
            info.path,
            texts,
            label=name,
            prompts=DEFAULT_PROMPTS,
            greedy_tokens=args.greedy_tokens if greedy else 0,
            max_tokens=args.max_validation_tokens,
            window=args.window,
            stride=args.stride,
            log=log,
        )
        for name, info in models.items()
    }


def served_measurements(
    args: argparse.Namespace, targets: dict[str, Target], texts: list[str], levels: list[int], log: measure.Log
) -> tuple[dict[str, dict[str, Any]] | None, dict[str, list[str]], dict[str, Any]]:
    """Preflight, engine perplexity (unless transformers is asked for), greedy outputs (whole
    texts, per variant), load test."""
    quiet_litellm()
    for target in targets.values():
        measure.preflight(target, args.serving_protocol)
    measures = None
    if fidelity_source(args, targets) == "engine":
        log(f"fidelity: perplexity through the serving engine over up to {args.max_validation_tokens} tokens")
        measures = engine_fidelity(
            targets,
            texts,
            max_tokens=args.max_validation_tokens,
            chunk_chars=args.chunk_chars,
            protocol=args.serving_protocol,
            log=log,
        )
    outputs = {v: measure.served_greedy_text(t, DEFAULT_PROMPTS, args.greedy_tokens) for v, t in targets.items()}
    log(f"performance: concurrency {levels}, {args.max_tokens} output tokens per request")
    measured = measure.measure_performance(
        targets, levels=levels, max_tokens=args.max_tokens, prompts=DEFAULT_PROMPTS, log=log
    )
    return measures, outputs, measured


def expected_kernels(
    models: dict[str, ModelInfo], targets: dict[str, Target] | None, instance_type: str
) -> dict[str, Any]:
    """A SageMaker variant's server log is not the client's to read: the report names the kernel
    vLLM is expected to pick on the serving GPU (contracts/serving_hardware.py)."""
    if not targets or any(t.kind != "sagemaker" for t in targets.values()):
        return {}
    return {
        name: {
            "linear_kernels": [expected_kernel(info.scheme, instance_type)],
            "kernel_source": f"expected on {instance_type}; vLLM logs its choice ('Selected ... for ...') "
            f"in the endpoint's log group /aws/sagemaker/Endpoints/{targets[name].model}",
        }
        for name, info in models.items()
    }


def run_job(args: argparse.Namespace, log: measure.Log = print) -> dict[str, Any]:
    thresholds, workload, levels, prices = check_settings(args)
    targets = targets_from_args(args)
    fidelity_source(args, targets)
    models = read_models(args)
    try:
        texts = records.read_texts(args.validation)
    except (OSError, ValueError) as exc:
        raise JobFailureError(str(exc)) from None
    measured = None
    if targets:
        measures, outputs, measured = served_measurements(args, targets, texts, levels, log)
        if measures is None:
            measures = transformers_fidelity(args, models, texts, greedy=False, log=log)
        method = "served (temperature 0)"
        greedy = measure.greedy_section(
            measure.words(outputs["baseline"]), measure.words(outputs["candidate"]), method, unit="words"
        )
    else:
        measures = transformers_fidelity(args, models, texts, greedy=True, log=log)
        method = "offline (transformers, float32)"
        greedy = measure.greedy_section(measures["baseline"]["greedy"], measures["candidate"]["greedy"], method)
        outputs = {name: measures[name]["greedy_text"] for name in ("baseline", "candidate")}
    report = build_report(
        models=models,
        fidelity=measure.fidelity_section(measures["baseline"], measures["candidate"], greedy),
        performance=measure.performance_section(measured, targets, reason=None, max_tokens=args.max_tokens),
        server_memory=expected_kernels(models, targets, args.measured_instance_type),
        thresholds=thresholds,
        workload=workload,
        prices=prices,
        measured_instance_type=args.measured_instance_type,
        measured_note="the throughput measured against the given targets, priced at this instance type's rate",
        context_tokens=args.context_tokens,
    )
    schemes = {name: info.scheme for name, info in models.items()}
    review = build_review(schemes, DEFAULT_PROMPTS, outputs, method=method, max_new_tokens=args.greedy_tokens)
    write_report(report, args.output_dir, review=review)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    config_dir = Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    failure_dir = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    # The pipeline runs this job as a processing job: its reason belongs in /opt/ml/output/message.
    processing = is_processing_job()
    try:
        # SageMaker starts training containers as `<entrypoint> train`; arguments win over the file.
        cli = strip_train(argv)
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
