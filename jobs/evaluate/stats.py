"""Statistics of a load test: percentiles, throughput and cost, in plain Python.

Kept free of numpy and of any I/O so the formulas the gate and the recommendation rest on are
tested on known inputs (tests/jobs/evaluate/test_stats.py) and read the same in every environment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MILLION = 1_000_000.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks.

    Same definition as numpy's default (``method="linear"``), so figures match what an analyst
    gets from the raw samples in report.json. An empty sample has no percentile: NaN, which the
    report writes as null.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class RequestResult:
    """One request of a load test, as the client saw it."""

    ok: bool
    latency_s: float
    ttft_s: float | None = None
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None
    text: str = ""


@dataclass(frozen=True)
class LevelSummary:
    """Measured figures of one variant at one concurrency (warm-up excluded)."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    output_tokens: int
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    itl_p50_s: float
    itl_p95_s: float
    output_tokens_per_s: float
    requests_per_s: float
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round_or_none(self.error_rate, 4),
            "wall_s": round_or_none(self.wall_s, 4),
            "output_tokens": self.output_tokens,
            "latency_p50_s": round_or_none(self.latency_p50_s, 4),
            "latency_p95_s": round_or_none(self.latency_p95_s, 4),
            "latency_p99_s": round_or_none(self.latency_p99_s, 4),
            "ttft_p50_s": round_or_none(self.ttft_p50_s, 4),
            "ttft_p95_s": round_or_none(self.ttft_p95_s, 4),
            "itl_p50_s": round_or_none(self.itl_p50_s, 5),
            "itl_p95_s": round_or_none(self.itl_p95_s, 5),
            "output_tokens_per_s": round_or_none(self.output_tokens_per_s, 4),
            "requests_per_s": round_or_none(self.requests_per_s, 4),
            "latencies_s": [round(v, 4) for v in self.latencies_s],
            "ttfts_s": [round(v, 4) for v in self.ttfts_s],
            "error_samples": self.error_samples,
        }


def throughput(tokens: int, wall_s: float) -> float:
    """Output tokens per second of wall time: the rate the server sustained for all clients."""
    if wall_s <= 0:
        raise ValueError(f"wall time must be positive, got {wall_s}")
    return tokens / wall_s


def inter_token_latency(result: RequestResult) -> float | None:
    """Mean time between output tokens after the first: (latency - TTFT) / (tokens - 1)."""
    if result.ttft_s is None or result.output_tokens < 2:
        return None
    return (result.latency_s - result.ttft_s) / (result.output_tokens - 1)


def summarize(concurrency: int, results: Sequence[RequestResult], wall_s: float) -> LevelSummary:
    """Aggregate one concurrency level.

    Latency percentiles cover successful requests only (a fast failure is not a fast answer);
    failures count in ``errors``. Throughput divides the successful requests' output tokens by
    the level's wall time, from the first request sent to the last answer received.
    """
    good = [r for r in results if r.ok]
    latencies = [r.latency_s for r in good]
    ttfts = [r.ttft_s for r in good if r.ttft_s is not None]
    itls = [inter_token_latency(r) for r in good]
    tokens = sum(r.output_tokens for r in good)
    errors = len(results) - len(good)
    samples = sorted({r.error or "unknown error" for r in results if not r.ok})[:3]
    return LevelSummary(
        concurrency=concurrency,
        requests=len(results),
        errors=errors,
        wall_s=wall_s,
        output_tokens=tokens,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        latency_p99_s=percentile(latencies, 99),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        itl_p50_s=percentile([v for v in itls if v is not None], 50),
        itl_p95_s=percentile([v for v in itls if v is not None], 95),
        output_tokens_per_s=throughput(tokens, wall_s),
        requests_per_s=len(good) / wall_s,
        latencies_s=latencies,
        ttfts_s=ttfts,
        error_samples=samples,
    )


def cost_per_million_tokens(usd_per_hour: float, tokens_per_s: float) -> float:
    """USD per 1M output tokens for an instance kept busy at the measured throughput.

    An always-on endpoint is paid by the hour whatever it serves, so the cost of a token is the
    hourly price over the tokens produced in that hour. Zero throughput costs infinitely much.
    """
    if usd_per_hour < 0:
        raise ValueError(f"price must not be negative, got {usd_per_hour}")
    if tokens_per_s <= 0:
        return math.inf
    return usd_per_hour / (tokens_per_s * SECONDS_PER_HOUR) * TOKENS_PER_MILLION


def ratio(candidate: float, baseline: float) -> float:
    """candidate / baseline, NaN when either side was not measured or the baseline is zero."""
    if math.isnan(candidate) or math.isnan(baseline) or baseline == 0:
        return math.nan
    return candidate / baseline


def round_or_none(value: float, digits: int) -> float | None:
    """JSON has no NaN or infinity: unmeasured figures are written as null."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)
