"""The pilot's decision and summary: the recommendation, pilot.json and the printed tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.live_quality import EMPTY_OR_REFUSAL, GREEDY_AGREEMENT, OUTPUT_LENGTH_RATIO, PERPLEXITY_INCREASE
from jobs.evaluate import (
    PERF_HEADER,
    Workload,
    json_safe,
    side_by_side_rows,
    text_table,
)
from jobs.pilot.plan import Plan
from jobs.pilot.steps import Candidate


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


def summarize(
    plan: Plan,
    base: Path,
    cands: Sequence[Candidate],
    recommendation: dict[str, Any],
    live_quality: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pilot_id": plan.pilot_id,
        "baseline": str(base),
        "algorithm": plan.args.algorithm,
        "workload": {"concurrency": plan.workload.concurrency, "p95_objective_s": plan.workload.p95_objective_s},
        "candidates": {},
        "recommendation": recommendation,
        # The canary sampler's metrics per served model (the baseline judged against itself too).
        "live_quality": live_quality or {},
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
    cleaned: dict[str, Any] = json_safe(out)
    return cleaned


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
    _print_performance(summary)
    _print_live_quality(summary)
    for scheme, c in summary["candidates"].items():
        _print_verdict(scheme, c)
    rec = summary["recommendation"]
    print()
    print(f"RECOMMENDATION: {rec['choice']} - {rec['why']}")
    for item in rec.get("rejected", []):
        print(f"    not {item['scheme']}: {item['why']}")


def _f(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _print_performance(summary: dict[str, Any]) -> None:
    """Every measured level of every variant, the baseline once."""
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


def _print_live_quality(summary: dict[str, Any]) -> None:
    """The canary sampler's metrics beside the speed table: what the live quality alarms would see."""
    quality = summary.get("live_quality") or {}
    if not quality:
        return
    rows = []
    for name, result in quality.items():
        m = result.get("metrics") or {}
        rows.append(
            [
                name,
                _f(m.get(PERPLEXITY_INCREASE.name), "+.2f"),
                _f(m.get(GREEDY_AGREEMENT.name), ".1f"),
                _f(m.get(EMPTY_OR_REFUSAL.name), ".0f"),
                _f(m.get(OUTPUT_LENGTH_RATIO.name), ".2f"),
                str(result.get("scored_tokens", "")),
                "; ".join(result.get("notes") or []) or "-",
            ]
        )
    first = next(iter(quality.values()))
    print(f"live quality (the canary sampler's metrics; {first.get('prompts')} prompts, greedy, vs the baseline):")
    header = ["model", "ppl +%", "agree %", "empty/refusal %", "length x", "tokens", "notes"]
    print(text_table(header, rows))
    print()


def _print_verdict(scheme: str, c: dict[str, Any]) -> None:
    if c.get("quantize_error"):
        print(f"{scheme}: NOT QUANTIZED: {c['quantize_error']}")
        return
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
