"""CloudWatch's evaluation of the canary alarms, as AWS documents it, over simulated per-period data.

The sweep (benchmarks/alarm_tuning.py) feeds this module per-tick request counts, error counts and
latency histograms; this module turns them into the alarms' datapoints (the metric math of
stacks/endpoint_monitoring.py), evaluates them the way CloudWatch does, and converts the tick at
which the alarm first reaches ALARM into seconds until traffic is back on the baseline.

What is modelled, and where it is documented:

- Datapoints. One datapoint per ``period`` covering the requests of that period: ``Sum`` of
  ``Invocations``/``Invocation5XXErrors``/``Invocation4XXErrors`` and ``p95`` of ``ModelLatency``.
  SageMaker publishes the endpoint invocation metrics "at a 1-minute frequency"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html), so a tick is one
  minute unless a what-if says otherwise (sub-minute needs ``MetricsConfig`` with
  ``EnableEnhancedMetrics`` and ``MetricPublishFrequencyInSeconds`` 10/30:
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_MetricsConfig.html).
- Metric math (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html):
  rates ``IF(inv >= min, 100 * FILL(err, 0) / inv, 0)``; the latency trigger
  ``IF(ic >= min AND ib >= min AND pb > 0, pc / pb, 0)``. "For an alarm based on a math expression
  ... the data point is considered missing if the math expression doesn't return a value": a period
  without any request has no ``Invocations`` datapoint, so the expression is missing there.
- Evaluation (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html):
  "For any period of one minute or longer, an alarm is evaluated every minute and the evaluation is
  based on the window of time defined by the Period and Evaluation Periods" (a 5-minute period is
  evaluated over minutes 1-5, then 2-6: the default ``SlidingWindow``,
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_EvaluationWindow.html);
  10/20/30-second periods are evaluated every 10 seconds. ALARM when at least ``DatapointsToAlarm``
  (M) of the last ``EvaluationPeriods`` (N) datapoints breach (``GreaterThanThreshold``); the
  breaching ones need not be consecutive.
- Missing data (same page, "How alarm state is evaluated when data is missing"): CloudWatch
  retrieves an *evaluation range* of more than N datapoints; if at least N real datapoints are in
  it, the most recent N real ones are evaluated and ``TreatMissingData`` is not used; otherwise the
  gaps are filled with the setting, here ``notBreaching`` (what the project sets). The page's
  example uses a range of 5 for N = 3 and says the size depends on the period; this model takes
  N + 2 (an assumption).
- Delay. The datapoint of a period becomes visible to the alarm ``delay_s`` after the period ends
  (SageMaker's publication plus CloudWatch's ingestion). AWS documents no figure for it: it is a
  parameter. The alarm's evaluation instants have a random phase against the period boundaries, so
  the wait for the next evaluation is uniform over one evaluation interval.
- After ALARM: the state change reaches EventBridge ("CloudWatch guarantees the delivery of alarm
  state change events to EventBridge", no latency figure:
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html),
  the rule invokes the rollback Lambda, which calls ``UpdateEndpointWeightsAndCapacities``
  (endpoint Updating, then InService; no duration documented:
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpointWeightsAndCapacities.html).
  These are the ``ActionChain`` allowances, the handler's share measured by
  benchmarks/rollback_latency.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# CloudWatch evaluates alarms with a period of a minute or more once a minute, 10/20/30-second
# (high-resolution) alarms every 10 seconds (AlarmThatSendsEmail.html, "Evaluating an alarm").
STANDARD_EVALUATION_S = 60
HIGH_RESOLUTION_EVALUATION_S = 10
PERCENTILE = 0.95
_NORMAL_QUANTILE = {0.95: 1.6448536269514722, 0.975: 1.959963984540054}

Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class AlarmTiming:
    """Period (in ticks), EvaluationPeriods (N) and DatapointsToAlarm (M) of one alarm."""

    period: int = 1
    evaluation_periods: int = 5
    datapoints_to_alarm: int = 3
    # Datapoints CloudWatch retrieves to cover missing ones; None: N + 2 (the documented N = 3 -> 5).
    evaluation_range: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError("datapoints_to_alarm must be between 1 and evaluation_periods")
        if self.period < 1:
            raise ValueError("period must be at least one tick")

    @property
    def label(self) -> str:
        return f"{self.datapoints_to_alarm}/{self.evaluation_periods} x {self.period}"


def window_sums(values: NDArray[np.integer], period: int) -> Ints:
    """Sum over the ``period`` ticks ending at each tick (axis 0); ticks before a full window are 0."""
    data = np.asarray(values)
    if period == 1:
        return data
    total = np.cumsum(data, axis=0, dtype=np.int64)
    out = total.copy()
    out[period:] = total[period:] - total[:-period]
    out[: period - 1] = 0
    return out


def percentile_from_histogram(histogram: NDArray[np.integer], bin_values: Floats, q: float = PERCENTILE) -> Floats:
    """Nearest-rank percentile of each row's requests (counts per latency bin, bins sorted ascending).

    Rows without requests are NaN (no ``ModelLatency`` datapoint).
    """
    counts = np.asarray(histogram)
    n = counts.sum(axis=1)
    rank = np.ceil(q * n)
    cumulative = counts.cumsum(axis=1)
    index = (cumulative >= rank[:, None]).argmax(axis=1)
    out = bin_values[index].astype(np.float64)
    out[n == 0] = np.nan
    return out


def rate_datapoints(errors: NDArray[np.integer], invocations: NDArray[np.integer], min_invocations: int):
    """``IF(inv >= min, 100 * FILL(err, 0) / inv, 0)``: (values, present); absent where inv has no data."""
    inv = np.asarray(invocations)
    present = inv > 0
    values = np.where(inv >= min_invocations, 100.0 * np.asarray(errors) / np.maximum(inv, 1), 0.0)
    return values, present


def ratio_datapoints(
    p95_candidate: Floats,
    p95_baseline: Floats,
    inv_candidate: NDArray[np.integer],
    inv_baseline: NDArray[np.integer],
    min_invocations: int,
):
    """``IF(ic >= min AND ib >= min AND pb > 0, pc / pb, 0)``: (values, present)."""
    ic, ib = np.asarray(inv_candidate), np.asarray(inv_baseline)
    present = (ic > 0) & (ib > 0)
    judged = (ic >= min_invocations) & (ib >= min_invocations) & present
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(judged, np.nan_to_num(p95_candidate) / np.where(judged, p95_baseline, 1.0), 0.0)
    return values, present


def _shifted(values: NDArray[np.bool_], by: int) -> Bools:
    if by == 0:
        return values
    out = np.zeros_like(values)
    out[by:] = values[:-by]
    return out


def alarm_states(values: Floats, present: Bools, threshold: float, timing: AlarmTiming) -> Bools:
    """ALARM (True) or OK at each tick, from the datapoints of the windows ending at that tick.

    ``values[t]``/``present[t]`` describe the datapoint of the window of ``timing.period`` ticks
    ending at tick t. The N datapoints evaluated at t are those ending at t, t - period, ...; the
    most recent N *real* ones within the evaluation range, missing ones counted as not breaching
    only when fewer than N real ones exist (TreatMissingData=notBreaching).
    """
    n = timing.evaluation_periods
    span = timing.evaluation_range or n + 2
    breach = present & (values > threshold)
    breaching = np.zeros(len(values), dtype=np.int64)
    real_seen = np.zeros(len(values), dtype=np.int64)
    for slot in range(span):
        shift = slot * timing.period
        real = _shifted(present, shift)
        real_seen += real
        breaching += _shifted(breach, shift) & real & (real_seen <= n)
    return breaching >= timing.datapoints_to_alarm


def alarm_transitions(state: Bools) -> int:
    """OK -> ALARM transitions (each one invokes the rollback function once)."""
    flips = np.count_nonzero(state[1:] & ~state[:-1])
    return int(flips) + int(state[0]) if len(state) else 0


def first_alarm(state: Bools, start: int) -> int | None:
    """First tick at or after ``start`` in ALARM, or None."""
    hits = np.flatnonzero(state[start:])
    return int(hits[0]) + start if len(hits) else None


@dataclass(frozen=True)
class ActionChain:
    """Seconds from the alarm's state change to the new weights serving traffic (allowances, see module doc)."""

    eventbridge_and_lambda_start_s: float = 5.0
    handler_to_weights_call_s: float = 0.2
    weights_applied_s: float = 30.0

    @property
    def total_s(self) -> float:
        return self.eventbridge_and_lambda_start_s + self.handler_to_weights_call_s + self.weights_applied_s


def seconds_to_baseline(
    alarm_tick: Ints,
    onset_tick: int,
    *,
    tick_s: float,
    delay_s: float,
    evaluation_s: float,
    evaluation_wait: Floats,
    chain: ActionChain,
) -> Floats:
    """Seconds from the onset (start of the first bad tick) until traffic is back on the baseline.

    The window ending at ``alarm_tick`` holds data up to the end of that tick; it is visible
    ``delay_s`` later and seen by the next evaluation (``evaluation_wait`` in [0, 1) of an interval).
    """
    data_s = (np.asarray(alarm_tick, dtype=np.float64) - onset_tick + 1) * tick_s
    return data_s + delay_s + evaluation_wait * evaluation_s + chain.total_s


def poisson_upper_bound(events: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson mean after observing ``events``.

    Exact (bisection on the Poisson CDF) up to 100 events, the Wilson-Hilferty approximation above.
    """
    if events > 100:
        z = _NORMAL_QUANTILE[confidence]
        k = events + 1
        return float(k * (1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3)

    def cdf(mean: float) -> float:
        term = total = math.exp(-mean)
        for k in range(1, events + 1):
            term *= mean / k
            total += term
        return total

    low, high = float(events), float(events) + 10.0 * math.sqrt(events + 1) + 10.0
    for _ in range(200):
        mid = (low + high) / 2
        if cdf(mid) > 1 - confidence:
            low = mid
        else:
            high = mid
    return high
