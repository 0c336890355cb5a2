"""The go/no-go gate: thresholds, their validation, and the verdict with readable reasons.

The pipeline's Choice state reads only ``passed``; people read ``reasons``. Every check is
listed (passing ones too), failures first, so a "no" names what to fix and a "yes" shows the
margins it passed by.

The state machine reads the verdict from ``gate.json`` (``pipeline_gate``), never from
report.json: a Step Functions task result over 256 KiB fails the state with
States.DataLimitExceeded, which no ``States.ALL`` catcher handles, so the file the pipeline
reads is bounded here (``GATE_MAX_BYTES``) whatever the report grows to.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from jobs.evaluate.stats import ratio, round_or_none

# The file the pipeline reads next to report.json, and its bounds: far below Step Functions'
# 256 KiB payload quota, since the state's input also carries the run plan.
GATE_MAX_BYTES = 16 * 1024
GATE_MAX_REASONS = 20
GATE_MAX_REASON_CHARS = 500


class GateConfigError(ValueError):
    """A threshold or workload setting is out of range (a bad input, not a failed gate)."""


@dataclass(frozen=True)
class Thresholds:
    """What a candidate must meet, at the declared workload concurrency.

    Defaults suit a pilot of a small model: small models lose more to quantization than 7B+
    ones (RTN W8A8 cost about +3 % perplexity on SmolLM2-135M in our measurements), so 5 % leaves room for a
    good recipe while catching a broken one (RTN W4A16 is +43 %).
    """

    max_ppl_increase_pct: float = 5.0
    max_p95_latency_ratio: float = 1.25
    min_throughput_ratio: float = 0.9
    max_error_rate: float = 0.01

    def validate(self) -> None:
        problems = []
        if not 0.0 <= self.max_ppl_increase_pct <= 1000.0:
            problems.append(f"max_ppl_increase_pct must be within [0, 1000] percent, got {self.max_ppl_increase_pct}")
        if not 0.0 < self.max_p95_latency_ratio <= 100.0:
            problems.append(f"max_p95_latency_ratio must be within (0, 100], got {self.max_p95_latency_ratio}")
        if not 0.0 <= self.min_throughput_ratio <= 100.0:
            problems.append(f"min_throughput_ratio must be within [0, 100], got {self.min_throughput_ratio}")
        if not 0.0 <= self.max_error_rate <= 1.0:
            problems.append(f"max_error_rate must be within [0, 1], got {self.max_error_rate}")
        if any(math.isnan(v) for v in asdict(self).values()):
            problems.append("thresholds must be numbers, not NaN")
        if problems:
            raise GateConfigError("; ".join(problems))


@dataclass(frozen=True)
class Workload:
    """The traffic the decision is for: how many requests in flight, and an optional P95 objective."""

    concurrency: int = 16
    p95_objective_s: float | None = None

    def validate(self, measured_levels: list[int] | None = None) -> None:
        if self.concurrency < 1:
            raise GateConfigError(f"workload concurrency must be at least 1, got {self.concurrency}")
        if measured_levels is not None and self.concurrency not in measured_levels:
            raise GateConfigError(
                f"workload concurrency {self.concurrency} is not among the measured levels {measured_levels}"
            )
        if self.p95_objective_s is not None and not self.p95_objective_s > 0:
            raise GateConfigError(f"the P95 latency objective must be positive seconds, got {self.p95_objective_s}")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not measured, does not fail the gate but is stated
    value: float | None
    threshold: float | None
    reason: str


def _perf_level(performance: dict[str, Any] | None, variant: str, concurrency: int) -> dict[str, Any] | None:
    if not performance or not performance.get("measured"):
        return None
    levels = performance.get("variants", {}).get(variant, {}).get("levels", {})
    level = levels.get(str(concurrency))
    return level if isinstance(level, dict) else None


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def evaluate_gate(
    fidelity: dict[str, Any] | None,
    performance: dict[str, Any] | None,
    thresholds: Thresholds,
    workload: Workload,
) -> dict[str, Any]:
    """Judge one candidate against its baseline; returns report.json's ``gate`` section."""
    checks: list[Check] = []

    if fidelity and fidelity.get("ppl_increase_pct") is not None:
        inc = float(fidelity["ppl_increase_pct"])
        limit = thresholds.max_ppl_increase_pct
        ok = inc <= limit
        checks.append(
            Check(
                "perplexity_increase",
                ok,
                inc,
                limit,
                f"perplexity {fidelity['baseline_perplexity']:.3f} -> {fidelity['candidate_perplexity']:.3f} "
                f"({inc:+.2f} %) {'within' if ok else 'exceeds'} the {limit:g} % limit "
                f"over {fidelity['token_count']} tokens",
            )
        )
    else:
        checks.append(
            Check("perplexity_increase", False, None, thresholds.max_ppl_increase_pct, "perplexity was not measured")
        )

    conc = workload.concurrency
    base = _perf_level(performance, "baseline", conc)
    cand = _perf_level(performance, "candidate", conc)
    if base is None or cand is None:
        why = (performance or {}).get("reason") or f"no measurement at concurrency {conc}"
        checks.append(Check("performance", None, None, None, f"speed not measured: {why}"))
    else:
        err = _num(cand.get("error_rate"))
        ok = err <= thresholds.max_error_rate
        checks.append(
            Check(
                "error_rate",
                ok,
                err,
                thresholds.max_error_rate,
                f"candidate error rate {err:.1%} at concurrency {conc} "
                f"{'within' if ok else 'exceeds'} the {thresholds.max_error_rate:.1%} limit",
            )
        )
        p95 = ratio(_num(cand.get("latency_p95_s")), _num(base.get("latency_p95_s")))
        ok = not math.isnan(p95) and p95 <= thresholds.max_p95_latency_ratio
        checks.append(
            Check(
                "p95_latency_ratio",
                ok,
                round_or_none(p95, 4),
                thresholds.max_p95_latency_ratio,
                f"P95 latency {_num(base.get('latency_p95_s')):.3f} s -> {_num(cand.get('latency_p95_s')):.3f} s "
                f"(x{p95:.2f}) at concurrency {conc}, limit x{thresholds.max_p95_latency_ratio:g}",
            )
        )
        tput = ratio(_num(cand.get("output_tokens_per_s")), _num(base.get("output_tokens_per_s")))
        ok = not math.isnan(tput) and tput >= thresholds.min_throughput_ratio
        checks.append(
            Check(
                "throughput_ratio",
                ok,
                round_or_none(tput, 4),
                thresholds.min_throughput_ratio,
                f"output tokens/s {_num(base.get('output_tokens_per_s')):.2f} -> "
                f"{_num(cand.get('output_tokens_per_s')):.2f} (x{tput:.2f}) at concurrency {conc}, "
                f"minimum x{thresholds.min_throughput_ratio:g}",
            )
        )
        if workload.p95_objective_s is not None:
            cand_p95 = _num(cand.get("latency_p95_s"))
            ok = not math.isnan(cand_p95) and cand_p95 <= workload.p95_objective_s
            checks.append(
                Check(
                    "p95_objective",
                    ok,
                    round_or_none(cand_p95, 4),
                    workload.p95_objective_s,
                    f"candidate P95 {cand_p95:.3f} s {'meets' if ok else 'misses'} the "
                    f"{workload.p95_objective_s:g} s objective at concurrency {conc}",
                )
            )

    passed = all(c.passed is not False for c in checks)
    ordered = [c for c in checks if c.passed is False] + [c for c in checks if c.passed is not False]
    reasons = [f"{'FAIL' if c.passed is False else 'ok' if c.passed else 'n/a'}: {c.reason}" for c in ordered]
    return {
        "passed": passed,
        "reasons": reasons,
        "checks": [asdict(c) for c in ordered],
        "thresholds": asdict(thresholds),
        "workload": asdict(workload),
    }


def pipeline_gate(gate: dict[str, Any]) -> dict[str, Any]:
    """The verdict the state machine reads (gate.json): ``passed`` and the first reasons, bounded.

    Failures come first in ``reasons``, so a cut keeps what made the gate fail; the full list
    stays in report.json.
    """
    reasons = [str(r)[:GATE_MAX_REASON_CHARS] for r in gate["reasons"]]
    kept = reasons[:GATE_MAX_REASONS]

    def summary() -> dict[str, Any]:
        cut = len(reasons) - len(kept)
        return {"passed": bool(gate["passed"]), "reasons": kept + ([f"... {cut} more in report.json"] if cut else [])}

    while kept and len(gate_json(summary())) > GATE_MAX_BYTES:
        kept.pop()
    return summary()


def gate_json(summary: dict[str, Any]) -> bytes:
    """gate.json's bytes as written (and as Step Functions counts them: UTF-8)."""
    return json.dumps(summary, ensure_ascii=False).encode()
