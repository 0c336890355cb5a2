"""Tune the canary alarms by simulation: detection time and false rollbacks per threshold setting.

The issue's goal: a 1.5x latency regression or 2 % 5xx errors is detected and traffic is back on the
baseline within 3 minutes of the first bad minute, with at most one false rollback per 30 healthy
canary-days. This benchmark simulates the candidate's rollback alarms of
stacks/endpoint_monitoring.py (5xx rate, 4xx rate, p95 ratio to the baseline; any of them rolls
back) over synthetic streams and CloudWatch's documented evaluation (benchmarks/alarm_simulation.py,
which cites the AWS pages), for a grid of settings at three traffic levels.

Streams, per minute:
- requests: Poisson; the candidate gets ``CANDIDATE_SHARE`` (5 %) of the endpoint's traffic;
- latency: each request's ModelLatency is resampled from the pilot's measured per-request latencies
  (benchmarks/results/pilot-smollm2-w8a8-report.json: the BF16 baseline at concurrency 16, 64
  requests), for both variants: a healthy candidate is as fast as the baseline (the measured W8A8
  was faster, so this is the worst healthy case for the ratio); a regression multiplies the
  candidate's latencies by 1.5. The 40 fastest entries are lumped at the largest of them (a p95
  falls there only when all but a handful of a window's requests are fast; the lump can only raise it);
- 5xx and 4xx: Bernoulli per request, ``BASE_ERROR_RATE`` (0.1 %, an assumption) when healthy, 2 %
  5xx from the onset of a 5xx regression.

Healthy canaries: ``--healthy-days`` canary-days per traffic level; a false rollback is the union of
the three alarms going from OK to ALARM (reported per 30 days with a one-sided 95 % Poisson upper
bound). Regressed canaries (``--replicates`` per traffic level and kind) run healthy, then turn bad
at a minute boundary (the onset); the time to traffic on the baseline is the data up to the minute
whose datapoint fires the alarm, plus the metric delay (60 s nominal; AWS documents none: for another
delay add the difference, every quantile moves by it), the wait for the next evaluation (uniform
over the 60-s evaluation interval), and the action chain (EventBridge and Lambda start 5 s, the
handler's measured cold first invocation from benchmarks/results/rollback-latency.json, 30 s for the
weights to apply: allowances, no AWS figures exist). P95 is None when fewer than 95 % of the
regressions were caught within ``HORIZON_MIN`` minutes.

Besides the grid (scenario ``primary``) it runs, on fewer days: the ratio alarm with a healthy
candidate at the evaluate gate's limit (p95 x 1.25) and with variable output lengths (each latency
times a lognormal factor, sigma 0.5: an assumption, the pilot's outputs all had 64 tokens); the rate
alarms alone at nine more traffic levels (a rate threshold's false rollbacks peak where the number of
errors a window needs is smallest for its expected count, between the three levels); and a what-if
with 10-second metrics (SageMaker's enhanced metrics; not what the project deploys). The setting
chosen (``choose``) keeps false rollbacks within the goal at every level of all of these, then
catches the most (traffic level, regression) pairs within the horizon, then the fastest.

    .venv/bin/python benchmarks/alarm_tuning.py [--healthy-days 600] [--replicates 1000] [--workers 2]

Seeded: the same arguments give the same numbers. Writes benchmarks/results/alarm-tuning.json and
prints the tables of docs/benchmarks.md ("Canary alarm tuning").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.alarm_simulation import (  # noqa: E402  (needs the repository root on sys.path)
    HIGH_RESOLUTION_EVALUATION_S,
    STANDARD_EVALUATION_S,
    ActionChain,
    AlarmTiming,
    alarm_states,
    alarm_transitions,
    percentile_from_histogram,
    poisson_upper_bound,
    rate_datapoints,
    ratio_datapoints,
    seconds_to_baseline,
)

RESULT = ROOT / "benchmarks" / "results" / "alarm-tuning.json"
PILOT = ROOT / "benchmarks" / "results" / "pilot-smollm2-w8a8-report.json"
ROLLBACK = ROOT / "benchmarks" / "results" / "rollback-latency.json"
SEED = 20261204
TRAFFIC_PER_MINUTE = (200, 1000, 5000)
# Where a rate threshold's false rollbacks peak lies between those levels: the rate alarms alone here.
SCAN_TRAFFIC_PER_MINUTE = (300, 400, 500, 600, 800, 1500, 2000, 3000, 10000)
CANDIDATE_SHARE = 0.05
BASE_ERROR_RATE = 0.001
BAD_5XX_RATE = 0.02
LATENCY_REGRESSION = 1.5
GATE_P95_RATIO = 1.25  # jobs/evaluate's default max_p95_latency_ratio: a candidate at it passed the gate
LENGTH_SIGMA = 0.5
ERROR_4XX_PERCENT = 5.0  # MonitoringThresholds.error_4xx_percent: not swept, it only adds false rollbacks
NOMINAL_DELAY_S = 60
GOAL_S = 180
GOAL_FALSE_ROLLBACKS = 1.0
HORIZON_MIN = 30
WARMUP_MIN = 20
CHUNK_DAYS = 30
EXACT_TOP_BINS = 24
LATENCY, ERRORS = "latency_1.5x", "5xx_2pct"

# The grid: (period in minutes, M, N) x ratio x 5xx % x min invocations (per period, as the metric math counts).
# Periods stop at 5 minutes: a longer window raises MonitoringThresholds.min_bake_minutes (window + 2) above
# the 7 minutes that the quality alarm's 5-minute period already sets.
STRUCTURES = (
    (1, 1, 1), (1, 2, 2), (1, 2, 3), (1, 3, 3), (1, 3, 5),
    (2, 1, 1), (2, 2, 2), (3, 1, 1), (3, 2, 2), (4, 1, 1), (5, 1, 1),
)  # fmt: skip
RATIOS = (1.3, 1.4, 1.5)  # not below the gate's 1.25: the canary must not reject what the gate accepted
ERROR_5XX_PERCENTS = (1.0, 1.25, 1.5, 2.0, 3.0)
MIN_INVOCATIONS = (10, 25, 50, 100, 200, 400)
CURRENT = (1, 3, 5, 1.5, 1.0, 10)
ROW_COLUMNS = (
    "scenario", "traffic_per_minute", "period_s", "m", "n", "ratio", "error_5xx_percent", "min_invocations",
    "false_rollbacks_per_30_days", "false_rollbacks_upper_95", "events_5xx", "events_4xx", "events_ratio",
    "latency_detected", "latency_median_s", "latency_p95_s", "5xx_detected", "5xx_median_s", "5xx_p95_s",
)  # fmt: skip


@dataclass(frozen=True)
class LatencyPool:
    """Per-request latencies to resample: sorted values and their probabilities (the first may be a lump)."""

    name: str
    values: tuple[float, ...]
    probs: tuple[float, ...]


def lumped_pool(name: str, samples: list[float], exact_top: int = EXACT_TOP_BINS) -> LatencyPool:
    ordered = sorted(samples)
    lump = len(ordered) - exact_top
    share = 1.0 / len(ordered)
    return LatencyPool(name, (ordered[lump - 1], *ordered[lump:]), (lump * share, *(share,) * exact_top))


@dataclass(frozen=True)
class Setting:
    period: int  # ticks
    m: int
    n: int
    ratio: float
    error_5xx_percent: float
    min_invocations: int

    @property
    def timing(self) -> AlarmTiming:
        return AlarmTiming(period=self.period, evaluation_periods=self.n, datapoints_to_alarm=self.m)


@dataclass(frozen=True)
class Scenario:
    """One traffic level of one experiment (what a worker process runs)."""

    name: str
    traffic_per_minute: int
    healthy_days: int
    replicates: int
    seed: int
    pool: LatencyPool
    tick_s: int = 60
    healthy_scale: float = 1.0
    alarms: tuple[str, ...] = ("5xx", "4xx", "ratio")
    detect: bool = True
    structures: tuple[tuple[int, int, int], ...] = STRUCTURES
    ratios: tuple[float, ...] = RATIOS
    error_5xx_percents: tuple[float, ...] = ERROR_5XX_PERCENTS
    min_invocations: tuple[int, ...] = MIN_INVOCATIONS

    @property
    def ticks_per_minute(self) -> int:
        return 60 // self.tick_s

    @property
    def kinds(self) -> tuple[str, ...]:
        if not self.detect:
            return ()
        return tuple(kind for kind, alarm in ((LATENCY, "ratio"), (ERRORS, "5xx")) if alarm in self.alarms)

    def settings(self) -> list[Setting]:
        return [
            Setting(p, m, n, r, e, k)
            for (p, m, n), r, e, k in itertools.product(
                self.structures, self.ratios, self.error_5xx_percents, self.min_invocations
            )
        ]


# --- streams -----------------------------------------------------------------------------------------


@dataclass
class Streams:
    inv_c: np.ndarray
    inv_b: np.ndarray
    err5: np.ndarray
    err4: np.ndarray
    hist_c: np.ndarray  # candidate latency counts over values_c
    hist_b: np.ndarray
    values_c: np.ndarray
    values_b: np.ndarray


def candidate_latency(hist: np.ndarray, base: np.ndarray, scale: float, bad: np.ndarray | None):
    """Candidate counts and bin values: the pool x ``scale`` when healthy, x 1.5 in the regressed ticks."""
    if bad is None:
        return hist, base * scale
    values = np.concatenate([base * scale, base * LATENCY_REGRESSION])
    order = np.argsort(values, kind="stable")
    wide = np.zeros((len(hist), 2 * len(base)), dtype=np.int32)
    wide[~bad, : len(base)] = hist[~bad]
    wide[bad, len(base) :] = hist[bad]
    return wide[:, order], values[order]


def make_streams(
    rng: np.random.Generator, scenario: Scenario, ticks: int, bad: np.ndarray | None, kind: str
) -> Streams:
    """Per-tick requests, errors and latency histograms; ``bad`` marks the regressed ticks (or None).

    Requests per tick are Poisson, so the counts per latency bin are independent Poisson draws (splitting
    a Poisson process); a variant's invocations are their sum.
    """
    per_tick = scenario.traffic_per_minute / scenario.ticks_per_minute
    base, probs = np.asarray(scenario.pool.values), np.asarray(scenario.pool.probs)
    hist_c = rng.poisson(per_tick * CANDIDATE_SHARE * probs, (ticks, len(probs))).astype(np.int32)
    hist_b = rng.poisson(per_tick * (1 - CANDIDATE_SHARE) * probs, (ticks, len(probs))).astype(np.int32)
    inv_c, inv_b = hist_c.sum(axis=1), hist_b.sum(axis=1)
    p5 = np.full(ticks, BASE_ERROR_RATE)
    if bad is not None and kind == ERRORS:
        p5[bad] = BAD_5XX_RATE
    err5 = rng.binomial(inv_c, p5)
    err4 = rng.binomial(inv_c, BASE_ERROR_RATE)
    regressed = bad if kind == LATENCY else None
    hist_c, values_c = candidate_latency(hist_c, base, scenario.healthy_scale, regressed)
    return Streams(inv_c, inv_b, err5, err4, hist_c, hist_b, values_c, base)


@dataclass
class WindowData:
    """Sums and p95 over the window of one period ending at each tick."""

    inv_c: np.ndarray
    inv_b: np.ndarray
    err5: np.ndarray
    err4: np.ndarray
    p95_c: np.ndarray
    p95_b: np.ndarray


def windows(streams: Streams, periods: list[int]) -> dict[int, WindowData]:
    """WindowData per period length, from one prefix sum per stream."""
    fields = ("inv_c", "inv_b", "err5", "err4", "hist_c", "hist_b")
    raw = {name: getattr(streams, name) for name in fields}
    prefix = {name: np.cumsum(value, axis=0, dtype=np.int64) for name, value in raw.items()}

    def window(name: str, period: int) -> np.ndarray:
        if period == 1:
            return raw[name]
        out = prefix[name].copy()
        out[period:] -= prefix[name][:-period]
        out[: period - 1] = 0
        return out

    return {
        p: WindowData(
            inv_c=window("inv_c", p),
            inv_b=window("inv_b", p),
            err5=window("err5", p),
            err4=window("err4", p),
            p95_c=percentile_from_histogram(window("hist_c", p), streams.values_c),
            p95_b=percentile_from_histogram(window("hist_b", p), streams.values_b),
        )
        for p in periods
    }


def alarm_set(data: dict[int, WindowData], setting: Setting, alarms: tuple[str, ...], cache: dict[Any, Any]):
    """The states of the candidate's rollback alarms under one setting (each alarm cached by its own knobs)."""
    w, timing, k = data[setting.period], setting.timing, setting.min_invocations
    shape = (setting.period, setting.m, setting.n, k)
    out = {}
    for alarm in alarms:
        knob = {"5xx": setting.error_5xx_percent, "4xx": ERROR_4XX_PERCENT, "ratio": setting.ratio}[alarm]
        key = (alarm, *shape, knob)
        if key not in cache:
            points = ("points", alarm, setting.period, k)
            if points not in cache:
                if alarm == "ratio":
                    cache[points] = ratio_datapoints(w.p95_c, w.p95_b, w.inv_c, w.inv_b, k)
                else:
                    cache[points] = rate_datapoints(w.err5 if alarm == "5xx" else w.err4, w.inv_c, k)
            values, present = cache[points]
            cache[key] = alarm_states(values, present, knob, timing)
        out[alarm] = cache[key]
    return out


def union(states: dict[str, np.ndarray]) -> np.ndarray:
    return np.logical_or.reduce(list(states.values()))


# --- healthy canaries: false rollbacks ------------------------------------------------------------------


def false_rollbacks(scenario: Scenario, settings: list[Setting]) -> tuple[dict[Setting, dict[str, int]], int]:
    """OK -> ALARM transitions of the union and of each alarm over the healthy canary-days."""
    rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 1]))
    counts = {s: dict.fromkeys(("union", *scenario.alarms), 0) for s in settings}
    periods = sorted({s.period for s in settings})
    chunks = max(1, scenario.healthy_days // CHUNK_DAYS)
    for _ in range(chunks):
        streams = make_streams(rng, scenario, CHUNK_DAYS * 1440 * scenario.ticks_per_minute, None, "healthy")
        data = windows(streams, periods)
        cache: dict[Any, Any] = {}
        for setting in settings:
            states = alarm_set(data, setting, scenario.alarms, cache)
            counts[setting]["union"] += alarm_transitions(union(states))
            for name, state in states.items():
                counts[setting][name] += alarm_transitions(state)
    return counts, chunks * CHUNK_DAYS


# --- regressed canaries: time to traffic on the baseline ------------------------------------------------


def detection_ticks(scenario: Scenario, settings: list[Setting], kind: str) -> dict[Setting, np.ndarray]:
    """Per replicate: ticks from the onset to the first tick in ALARM; -1 not within the horizon, -2 already."""
    rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 2, (LATENCY, ERRORS).index(kind)]))
    warmup, horizon = WARMUP_MIN * scenario.ticks_per_minute, HORIZON_MIN * scenario.ticks_per_minute
    length = warmup + horizon
    bad = np.tile(np.arange(length) >= warmup, scenario.replicates)
    streams = make_streams(rng, scenario, length * scenario.replicates, bad, kind)
    data = windows(streams, sorted({s.period for s in settings}))
    cache: dict[Any, Any] = {}
    out = {}
    for setting in settings:
        state = union(alarm_set(data, setting, scenario.alarms, cache)).reshape(scenario.replicates, length)
        after = state[:, warmup:]
        ticks = np.where(after.any(axis=1), after.argmax(axis=1), -1)
        ticks[state[:, warmup - 1]] = -2  # in ALARM before the onset: a false rollback, not a detection
        out[setting] = ticks
    return out


def time_summary(ticks: np.ndarray, scenario: Scenario, chain: ActionChain) -> tuple[float, int | None, int | None]:
    """(share detected within the horizon, median s, P95 s) at the nominal metric delay."""
    rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 3]))
    evaluation_s = STANDARD_EVALUATION_S if scenario.tick_s >= 60 else HIGH_RESOLUTION_EVALUATION_S
    valid = ticks[ticks != -2]
    seconds = seconds_to_baseline(
        valid,
        0,
        tick_s=scenario.tick_s,
        delay_s=NOMINAL_DELAY_S,
        evaluation_s=evaluation_s,
        evaluation_wait=rng.random(len(valid)),
        chain=chain,
    )
    seconds = np.where(valid >= 0, seconds, np.inf)
    median, p95 = (float(np.quantile(seconds, q, method="inverted_cdf")) for q in (0.5, 0.95))
    return (
        round(float(np.mean(valid >= 0)), 4),
        round(median) if np.isfinite(median) else None,
        round(p95) if np.isfinite(p95) else None,
    )


def run_scenario(scenario: Scenario, chain: ActionChain) -> list[list[Any]]:
    """Rows (``ROW_COLUMNS``) of every setting of one scenario."""
    settings = scenario.settings()
    fp, days = false_rollbacks(scenario, settings)
    detections = {kind: detection_ticks(scenario, settings, kind) for kind in scenario.kinds}
    rows = []
    for s in settings:
        events = fp[s]["union"]
        row: list[Any] = [scenario.name, scenario.traffic_per_minute, s.period * scenario.tick_s, s.m, s.n]
        row += [s.ratio, s.error_5xx_percent, s.min_invocations]
        row += [round(30 * events / days, 3), round(30 * poisson_upper_bound(events) / days, 3)]
        row += [fp[s].get(alarm) for alarm in ("5xx", "4xx", "ratio")]
        for kind in (LATENCY, ERRORS):
            row += list(time_summary(detections[kind][s], scenario, chain)) if kind in detections else [None] * 3
        rows.append(row)
    return rows


# --- experiments ---------------------------------------------------------------------------------------

PRIMARY = "primary"
SCAN = "rate alarms across traffic"
GATE_LIMIT = "ratio: candidate at the gate limit"
LENGTHS = "ratio: variable output lengths"
LENGTHS_GATE_LIMIT = "ratio: variable lengths, candidate at the gate limit"
WHAT_IF = "what-if: 10-second metrics"
# Where a rate threshold's false rollbacks peak lies between the three levels (the integer number of
# errors a window needs jumps with its size): the rate alarms alone at these levels too.
SCAN_TRAFFIC_PER_MINUTE = (300, 400, 500, 600, 800, 1500, 2000, 3000, 10000)


def pilot_samples() -> list[float]:
    report = json.loads(PILOT.read_text())
    return [float(x) for x in report["performance"]["variants"]["baseline"]["levels"]["16"]["latencies_s"]]


def variable_length_samples(samples: list[float], seed: int, quantiles: int = 256) -> list[float]:
    """The pilot's latencies times a lognormal output-length factor, as equally likely quantiles."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    mixed = np.repeat(samples, 4000) * rng.lognormal(0.0, LENGTH_SIGMA, len(samples) * 4000)
    return [float(x) for x in np.quantile(mixed, (np.arange(quantiles) + 0.5) / quantiles)]


def action_chain() -> ActionChain:
    """The allowances after ALARM; the handler's share is its measured cold first invocation."""
    measured = json.loads(ROLLBACK.read_text())
    return ActionChain(handler_to_weights_call_s=round(measured["first_invocation_ms"] / 1000, 3))


def experiments(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario, the expensive ones first (the pool hands them out in this order)."""
    samples = pilot_samples()
    pilot = lumped_pool("pilot BF16 at concurrency 16, 64 requests", samples)
    lengths = lumped_pool(
        f"pilot x lognormal(0, {LENGTH_SIGMA}), 256 quantiles",
        variable_length_samples(samples, SEED),
        4 * EXACT_TOP_BINS,
    )
    few = max(CHUNK_DAYS, args.healthy_days // 4)
    ratio_only = {"alarms": ("ratio",), "error_5xx_percents": (ERROR_5XX_PERCENTS[0],), "healthy_days": few}
    primary = [Scenario(PRIMARY, t, args.healthy_days, args.replicates, SEED + t, pilot) for t in TRAFFIC_PER_MINUTE]
    out = list(primary)
    out += [
        replace(
            p,
            name=WHAT_IF,
            tick_s=10,
            healthy_days=CHUNK_DAYS,
            replicates=args.replicates // 2,
            # 10/20/30-second periods (high-resolution alarms, evaluated every 10 s); a 60-s period on
            # 10-second data is a standard alarm again, evaluated once a minute.
            structures=((1, 1, 1), (2, 1, 1), (3, 1, 1), (3, 2, 2)),
            ratios=(1.4,),
            error_5xx_percents=(1.5, 2.0),
            min_invocations=(25, 50, 100),
        )
        for p in primary
    ]
    for p in primary:
        out += [
            replace(p, name=LENGTHS, pool=lengths, replicates=args.replicates // 2, **ratio_only),
            replace(p, name=LENGTHS_GATE_LIMIT, pool=lengths, healthy_scale=GATE_P95_RATIO, detect=False, **ratio_only),
            replace(p, name=GATE_LIMIT, healthy_scale=GATE_P95_RATIO, detect=False, **ratio_only),
        ]
    rate_only = {"alarms": ("5xx", "4xx"), "detect": False, "ratios": (RATIOS[0],)}
    days = max(CHUNK_DAYS, args.healthy_days // 2)
    out += [Scenario(SCAN, t, days, 0, SEED + t, pilot, **rate_only) for t in SCAN_TRAFFIC_PER_MINUTE]  # type: ignore[arg-type]
    return out


# --- choosing, reporting ----------------------------------------------------------------------------------

Key = tuple[Any, ...]  # (period min, M, N, ratio, 5xx %, min invocations)
Groups = dict[Key, dict[int, dict[str, Any]]]


def as_dicts(rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(ROW_COLUMNS, row, strict=True)) for row in rows]


def setting_key(row: dict[str, Any]) -> Key:
    period = row["period_s"] // 60 if row["period_s"] >= 60 else row["period_s"] / 60
    return (period, row["m"], row["n"], row["ratio"], row["error_5xx_percent"], row["min_invocations"])


def rate_key(key: Key) -> Key:
    return (*key[:3], *key[4:])


def ratio_key(key: Key) -> Key:
    return (*key[:4], key[5])


def grouped(rows: list[dict[str, Any]], scenario: str) -> Groups:
    out: Groups = defaultdict(dict)
    for row in rows:
        if row["scenario"] == scenario:
            out[setting_key(row)][row["traffic_per_minute"]] = row
    return out


def peaks(groups: Groups, project: Any) -> dict[Key, tuple[float, int]]:
    """Per projected key, the largest 95 % bound of false rollbacks over the traffic levels, and where."""
    out: dict[Key, tuple[float, int]] = {}
    for key, cells in groups.items():
        worst = max((row["false_rollbacks_upper_95"], traffic) for traffic, row in cells.items())
        out[project(key)] = max(worst, out.get(project(key), (0.0, 0)))
    return out


@dataclass
class Verdicts:
    """Everything the choice looks at besides the primary grid itself."""

    scan: dict[Key, tuple[float, int]]  # rate alarms: worst bound across SCAN_TRAFFIC_PER_MINUTE
    lengths: dict[Key, tuple[float, int]]  # ratio alarm under variable output lengths: worst bound

    def feasible(self, key: Key, cells: dict[int, dict[str, Any]]) -> bool:
        bounds = [row["false_rollbacks_upper_95"] for row in cells.values()]
        bounds += [self.scan[rate_key(key)][0], self.lengths[ratio_key(key)][0]]
        return all(bound <= GOAL_FALSE_ROLLBACKS for bound in bounds)


def score(cells: dict[int, dict[str, Any]]) -> tuple[int, float]:
    """(cells whose regression is caught at P95 within the horizon, minus the sum of those P95s)."""
    p95s = [row[f"{kind}_p95_s"] for row in cells.values() for kind in ("latency", "5xx")]
    caught = [p for p in p95s if p is not None]
    return len(caught), -float(sum(caught))


def choose(groups: Groups, verdicts: Verdicts, structure: tuple[int, ...] | None = None) -> Key | None:
    """The setting with at most one false rollback per 30 days (95 % bound) at every simulated traffic level
    (grid, scan and the variable-length ratio check) that catches the most (traffic, regression) cells at
    P95 within the horizon, then the smallest sum of those P95s, then the smallest min_invocations."""
    keys = [
        k for k, cells in groups.items() if (structure is None or k[:3] == structure) and verdicts.feasible(k, cells)
    ]
    if not keys:
        return None
    return max(keys, key=lambda k: (*score(groups[k]), -k[5]))


def describe(key: Key) -> str:
    period, m, n, ratio, e5, k = key
    return f"{m} of {n} x {round(period * 60)} s, ratio {ratio:g}, 5xx {e5:g} %, min {k}"


def minutes(seconds: int | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def table(groups: Groups, keys: list[Key]) -> list[str]:
    lines = [
        "| setting: M of N x period, ratio, 5xx, min invocations | endpoint req/min (candidate) "
        "| false rollbacks / 30 d (95 % bound) | 1.5x latency: minutes to baseline, median / P95 "
        "| 2 % 5xx: median / P95 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in keys:
        for traffic, row in sorted(groups[key].items()):
            fp = f"{row['false_rollbacks_per_30_days']:g} ({row['false_rollbacks_upper_95']:g})"
            latency = f"{minutes(row['latency_median_s'])} / {minutes(row['latency_p95_s'])}"
            errors = f"{minutes(row['5xx_median_s'])} / {minutes(row['5xx_p95_s'])}"
            share = round(traffic * CANDIDATE_SHARE)
            lines.append(f"| {describe(key)} | {traffic} ({share}) | {fp} | {latency} | {errors} |")
    return lines


def showcase(groups: Groups, verdicts: Verdicts, chosen: Key) -> list[Key]:
    """Current, chosen, the best feasible setting of every other M-of-N x period, and the fastest one."""
    keys = [CURRENT, chosen]
    for structure in STRUCTURES:
        best = choose(groups, verdicts, structure)
        if best is not None:
            keys.append(best)
    keys.append((1, 1, 1, 1.3, 1.0, 10))
    return list(dict.fromkeys(keys))


def sensitivity_table(rows: list[dict[str, Any]], chosen: Key) -> list[str]:
    """The ratio alarm of the chosen M-of-N x period and min invocations, at every ratio threshold."""
    lines = [
        "| ratio threshold | endpoint req/min | false rollbacks / 30 d (95 % bound): candidate at the gate limit "
        "| variable lengths | variable lengths, at the gate limit | 1.5x latency with variable lengths: median / P95 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    cells: dict[tuple[float, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        key = setting_key(row)
        if row["scenario"].startswith("ratio:") and (*key[:3], key[5]) == (*chosen[:3], chosen[5]):
            cells[(row["ratio"], row["traffic_per_minute"])][row["scenario"]] = row
    for (ratio, traffic), by in sorted(cells.items()):
        bounds = [
            f"{by[name]['false_rollbacks_per_30_days']:g} ({by[name]['false_rollbacks_upper_95']:g})"
            for name in (GATE_LIMIT, LENGTHS, LENGTHS_GATE_LIMIT)
        ]
        timing = f"{minutes(by[LENGTHS]['latency_median_s'])} / {minutes(by[LENGTHS]['latency_p95_s'])}"
        lines.append(f"| {ratio:g} | {traffic} | {' | '.join(bounds)} | {timing} |")
    return lines


def what_if_table(rows: list[dict[str, Any]]) -> list[str]:
    """10-second metrics: the settings without a false rollback in the healthy days that catch something."""
    lines = [
        "| setting | endpoint req/min | false rollbacks in 30 d (95 % bound / 30 d) "
        "| 1.5x latency: median / P95 | 2 % 5xx: median / P95 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in (r for r in rows if r["scenario"] == WHAT_IF):
        quiet = row["events_5xx"] + row["events_4xx"] + row["events_ratio"] == 0
        caught = row["latency_p95_s"] is not None or row["5xx_p95_s"] is not None
        if quiet and caught:
            latency = f"{minutes(row['latency_median_s'])} / {minutes(row['latency_p95_s'])}"
            errors = f"{minutes(row['5xx_median_s'])} / {minutes(row['5xx_p95_s'])}"
            setting = f"{row['m']} of {row['n']} x {row['period_s']} s, 5xx {row['error_5xx_percent']:g} %, "
            setting += f"min {row['min_invocations']}"
            lines.append(
                f"| {setting} | {row['traffic_per_minute']} | 0 ({row['false_rollbacks_upper_95']:g}) "
                f"| {latency} | {errors} |"
            )
    return lines


def compact(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row[c] for c in ROW_COLUMNS] for row in rows]


def write(path: Path, head: dict[str, Any], tables: dict[str, list[list[Any]]]) -> None:
    """JSON with one line per row (the grid is large; a row per line keeps it readable and diffable)."""
    body = json.dumps({**head, "columns": list(ROW_COLUMNS)}, indent=2)[:-2]
    for name, rows in tables.items():
        lines = ",\n".join("    " + json.dumps(row) for row in rows)
        body += f',\n  "{name}": [\n{lines}\n  ]'
    path.write_text(body + "\n}\n")


def bounds_row(key: Key, cells: dict[int, dict[str, Any]], verdicts: Verdicts) -> list[Any]:
    primary = [cells[t]["false_rollbacks_upper_95"] for t in TRAFFIC_PER_MINUTE]
    scan, lengths = verdicts.scan[rate_key(key)][0], verdicts.lengths[ratio_key(key)][0]
    return [round(key[0] * 60), *key[1:], *primary, scan, lengths]


def report(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[list[Any]]], list[str]]:
    groups = grouped(rows, PRIMARY)
    verdicts = Verdicts(scan=peaks(grouped(rows, SCAN), rate_key), lengths=peaks(grouped(rows, LENGTHS), ratio_key))
    chosen = choose(groups, verdicts)
    if chosen is None:
        raise SystemExit("no setting keeps false rollbacks within the goal; simulate more --healthy-days")
    keys = showcase(groups, verdicts, chosen)
    goal_met = sorted({describe(setting_key(r)) for r in rows if r["scenario"] == PRIMARY and meets_goal(r)})
    summary = {
        key_name: {
            "setting": describe(key),
            "false_rollbacks_peak_across_traffic_scan": verdicts.scan[rate_key(key)],
            "ratio_false_rollbacks_peak_with_variable_lengths": verdicts.lengths[ratio_key(key)],
            "by_traffic": {t: {c: row[c] for c in ROW_COLUMNS[8:]} for t, row in sorted(groups[key].items())},
        }
        for key_name, key in (("current", CURRENT), ("chosen", chosen))
    }
    shown = {ratio_key(k) for k in keys}
    kept = {k for k, cells in groups.items() if verdicts.feasible(k, cells)} | set(keys)
    tables = {
        "rows": compact([r for r in rows if r["scenario"] == PRIMARY and setting_key(r) in kept]),
        "false_rollback_bounds": [bounds_row(k, cells, verdicts) for k, cells in groups.items()],
        "sensitivity_rows": compact(
            [r for r in rows if r["scenario"].startswith("ratio:") and ratio_key(setting_key(r)) in shown]
        ),
        "what_if_rows": compact([r for r in rows if r["scenario"] == WHAT_IF]),
    }
    head = {
        **summary,
        "settings_meeting_the_whole_goal": goal_met,
        "showcase": [describe(k) for k in keys],
        "tables": {
            "rows": "primary grid, settings within the false-rollback goal everywhere (and the showcase); columns",
            "false_rollback_bounds": "every setting: period_s, M, N, ratio, 5xx %, min, 95 % bound per 30 days at "
            f"{TRAFFIC_PER_MINUTE} req/min, worst over {SCAN_TRAFFIC_PER_MINUTE} (rate alarms), "
            "worst with variable output lengths (ratio alarm)",
            "sensitivity_rows": "ratio alarm alone, showcase settings; columns",
            "what_if_rows": "10-second metrics (not deployed); columns",
        },
    }
    lines = [*table(groups, keys), "", *sensitivity_table(rows, chosen), "", *what_if_table(rows)]
    return head, tables, lines


def meets_goal(row: dict[str, Any]) -> bool:
    times = (row["latency_p95_s"], row["5xx_p95_s"])
    fast = all(t is not None and t <= GOAL_S for t in times)
    return fast and row["false_rollbacks_upper_95"] <= GOAL_FALSE_ROLLBACKS


def model(args: argparse.Namespace, chain: ActionChain) -> dict[str, Any]:
    return {
        "what": "canary alarms simulated against CloudWatch's documented evaluation; see benchmarks/alarm_tuning.py",
        "goal": {"p95_seconds_to_baseline": GOAL_S, "false_rollbacks_per_30_canary_days": GOAL_FALSE_ROLLBACKS},
        "sources": SOURCES,
        "assumptions": {
            "metric_delay_s": NOMINAL_DELAY_S,
            "other_delays": "every quantile moves by the difference (30 s: -30, 120 s: +60)",
            "evaluation_interval_s": STANDARD_EVALUATION_S,
            "evaluation_range": "N + 2 datapoints",
            "action_chain_s": {**asdict(chain), "total": chain.total_s},
            "candidate_share": CANDIDATE_SHARE,
            "healthy_5xx_and_4xx_rate": BASE_ERROR_RATE,
            "bad_5xx_rate": BAD_5XX_RATE,
            "latency_regression": LATENCY_REGRESSION,
            "error_4xx_percent": ERROR_4XX_PERCENT,
            "latency_pool": f"{PILOT.relative_to(ROOT)}: baseline, concurrency 16 (64 requests)",
            "variable_lengths": f"latency x lognormal(0, {LENGTH_SIGMA}) (assumption)",
            "gate_limit_candidate": f"healthy candidate at p95 x {GATE_P95_RATIO} (jobs/evaluate gate default)",
            "horizon_min": HORIZON_MIN,
            "percentile": "nearest rank",
        },
        "healthy_days_per_traffic_level": args.healthy_days,
        "replicates_per_traffic_level_and_kind": args.replicates,
        "seed": SEED,
    }


SOURCES = (
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html",
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_EvaluationWindow.html",
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html",
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html",
    "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html",
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_MetricsConfig.html",
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpointWeightsAndCapacities.html",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--healthy-days", type=int, default=600, help="healthy canary-days per traffic level")
    parser.add_argument("--replicates", type=int, default=1000, help="regressed canaries per traffic level and kind")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    started = time.perf_counter()
    chain = action_chain()
    with ProcessPoolExecutor(max_workers=args.workers) as executor:
        results = list(executor.map(run_scenario, experiments(args), itertools.repeat(chain)))
    rows = as_dicts([row for chunk in results for row in chunk])
    head, tables, lines = report(rows)
    runtime = time.perf_counter() - started
    head = {
        **model(args, chain),
        **head,
        "runtime_s": round(runtime),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write(args.output, head, tables)
    print("\n".join(lines))
    print(f"\nchosen: {head['chosen']['setting']}")
    print(f"settings meeting the whole goal: {head['settings_meeting_the_whole_goal'] or 'none'}")
    print(f"{len(rows)} rows in {runtime:.0f} s -> {args.output}")


if __name__ == "__main__":
    main()
