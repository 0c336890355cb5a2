"""The CloudWatch evaluation model behind benchmarks/alarm_tuning.py (benchmarks/alarm_simulation.py).

The expected states of the missing-data cases are the rows of AWS's own tables ("How alarm state is
evaluated when data is missing", TreatMissingData=notBreaching column) in
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html, with the
evaluation range of 5 datapoints those tables use for N = 3.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.alarm_simulation import (
    ActionChain,
    AlarmTiming,
    alarm_states,
    alarm_transitions,
    first_alarm,
    percentile_from_histogram,
    poisson_upper_bound,
    rate_datapoints,
    ratio_datapoints,
    seconds_to_baseline,
    window_sums,
)


def _datapoints(pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """'0' not breaching, 'X' breaching, '-' missing; oldest first, as in AWS's tables."""
    values = np.array([2.0 if c == "X" else 0.0 for c in pattern])
    present = np.array([c != "-" for c in pattern])
    return values, present


def _state_now(pattern: str, m: int, n: int) -> bool:
    values, present = _datapoints(pattern)
    return bool(alarm_states(values, present, 1.0, AlarmTiming(1, n, m))[-1])


@pytest.mark.parametrize(
    ("pattern", "alarm"),
    [
        ("0-X-X", False),  # 3 real datapoints in the range: the most recent 3 real ones (0 X X) are evaluated
        ("0----", False),
        ("-----", False),  # notBreaching: all missing is OK
        ("0XX-X", True),
        ("----X", False),  # one real breaching datapoint, two filled as not breaching
        ("X----", False),
    ],
)
def test_3_of_3_with_missing_data_treated_as_not_breaching(pattern, alarm):
    assert _state_now(pattern, m=3, n=3) is alarm


@pytest.mark.parametrize(
    ("pattern", "alarm"),
    [
        ("0-X-X", True),
        ("00X0X", True),
        ("0-X--", False),
        ("----0", False),
        ("----X", False),
    ],
)
def test_2_of_3_with_missing_data_treated_as_not_breaching(pattern, alarm):
    assert _state_now(pattern, m=2, n=3) is alarm


def test_m_of_n_needs_m_breaching_datapoints_within_the_last_n_not_consecutive():
    values, present = _datapoints("00XX0X000")
    states = alarm_states(values, present, 1.0, AlarmTiming(1, 3, 2))
    # ALARM while two breaching datapoints are among the last three (X 0 X counts), OK once one drops out.
    assert states.tolist() == [False, False, False, True, True, True, False, False, False]
    assert alarm_transitions(states) == 1
    assert first_alarm(states, 0) == 3
    assert first_alarm(states, 6) is None


def test_a_breach_equal_to_the_threshold_does_not_count():
    states = alarm_states(np.array([1.0, 1.0]), np.array([True, True]), 1.0, AlarmTiming(1, 1, 1))
    assert not states.any()  # GreaterThanThreshold


def test_rate_is_zero_below_min_invocations_and_missing_without_any():
    errors = np.array([1, 5, 0, 3])
    invocations = np.array([9, 100, 0, 10])
    values, present = rate_datapoints(errors, invocations, min_invocations=10)
    # 1 of 9 would be 11 %, but 9 < 10 requests: 0, not breaching; no requests at all: no datapoint.
    assert values.tolist() == [0.0, 5.0, 0.0, 30.0]
    assert present.tolist() == [True, True, False, True]
    states = alarm_states(values, present, 10.0, AlarmTiming(1, 1, 1))
    assert states.tolist() == [False, False, False, True]


def test_ratio_needs_min_invocations_on_both_variants():
    p95_c = np.array([3.0, 3.0, 3.0, np.nan])
    p95_b = np.array([2.0, 2.0, 2.0, 2.0])
    inv_c = np.array([10, 9, 10, 0])
    inv_b = np.array([10, 10, 9, 10])
    values, present = ratio_datapoints(p95_c, p95_b, inv_c, inv_b, min_invocations=10)
    assert values.tolist() == [1.5, 0.0, 0.0, 0.0]
    assert present.tolist() == [True, True, True, False]


def test_longer_periods_slide_one_tick_at_a_time():
    # A 3-minute period evaluated every minute: each datapoint sums the 3 minutes ending there.
    assert window_sums(np.array([1, 2, 3, 4, 5]), 3).tolist() == [0, 0, 6, 9, 12]
    assert window_sums(np.array([1, 2]), 1).tolist() == [1, 2]
    # N datapoints of a longer period are one period apart: 2 of 2 x 2 ticks reads the windows ending at
    # t and t - 2, so breaching windows at consecutive ticks (which overlap) are not two datapoints.
    present = np.array([False, True, True, True])
    consecutive = np.array([0.0, 2.0, 2.0, 0.0])
    one_period_apart = np.array([0.0, 2.0, 0.0, 2.0])
    assert not alarm_states(consecutive, present, 1.0, AlarmTiming(2, 2, 2)).any()
    assert alarm_states(one_period_apart, present, 1.0, AlarmTiming(2, 2, 2)).tolist() == [False, False, False, True]


def test_percentile_is_nearest_rank_and_missing_without_requests():
    counts = np.array([[1] * 20, [0] * 20, [0] * 19 + [3]])
    values = np.arange(1.0, 21.0)
    p95 = percentile_from_histogram(counts, values)
    assert p95[0] == 19.0  # rank ceil(0.95 * 20) = 19
    assert np.isnan(p95[1])
    assert p95[2] == 20.0


def test_time_to_baseline_adds_the_minute_of_data_the_delay_the_evaluation_wait_and_the_chain():
    chain = ActionChain(eventbridge_and_lambda_start_s=5, handler_to_weights_call_s=1, weights_applied_s=30)
    seconds = seconds_to_baseline(
        np.array([0, 2]),
        0,
        tick_s=60,
        delay_s=60,
        evaluation_s=60,
        evaluation_wait=np.array([0.0, 0.5]),
        chain=chain,
    )
    # Alarm on the first bad minute's datapoint: 60 s of data + 60 s delay + no wait + 36 s.
    assert seconds.tolist() == [156.0, 60 * 3 + 60 + 30 + 36]


def test_timing_refuses_more_datapoints_than_periods():
    with pytest.raises(ValueError, match="datapoints_to_alarm"):
        AlarmTiming(1, 2, 3)


@pytest.mark.parametrize(
    ("events", "bound"),
    # chi2.ppf(0.95, 2 k + 2) / 2; exact up to 100 events, Wilson-Hilferty above.
    [(0, 2.995732), (1, 4.743865), (5, 10.513035), (100, 118.079273), (101, 119.161004), (500, 538.376495)],
)
def test_poisson_upper_bound_matches_the_chi_square_quantiles(events, bound):
    assert poisson_upper_bound(events) == pytest.approx(bound, rel=1e-5)


def test_the_sweep_sees_a_latency_regression_in_its_first_bad_minute_at_high_traffic():
    from benchmarks.alarm_tuning import LATENCY, Scenario, detection_ticks, lumped_pool, pilot_samples

    scenario = Scenario(
        "smoke",
        5000,
        healthy_days=30,
        replicates=20,
        seed=1,
        pool=lumped_pool("pilot", pilot_samples()),
        structures=((1, 1, 1),),
        ratios=(1.3,),
        error_5xx_percents=(100.0,),
        min_invocations=(10,),
    )
    [setting] = scenario.settings()
    # 250 candidate requests a minute 1.5x slower than the baseline's 4750: the ratio breaches at once.
    assert detection_ticks(scenario, [setting], LATENCY)[setting].tolist() == [0] * 20


def test_the_report_tables_take_rows_of_every_scenario():
    from benchmarks.alarm_tuning import (
        GATE_LIMIT,
        LENGTHS,
        LENGTHS_GATE_LIMIT,
        ROW_COLUMNS,
        SCAN,
        WHAT_IF,
        as_dicts,
        sensitivity_table,
        what_if_table,
    )

    def row(scenario, period_s, events=(0, 0, 0), timing=(1.0, 200, 250, 1.0, 300, 600)):
        return [scenario, 5000, period_s, 1, 1, 1.4, 2.0, 200, 0.0, 0.15, *events, *timing]

    rows = as_dicts(
        [
            row(SCAN, 300, events=(0, 0, None), timing=(None,) * 6),  # rate alarms only: no ratio, no timing
            row(WHAT_IF, 30),
            row(WHAT_IF, 10, timing=(0.0, None, None, 0.0, None, None)),  # caught nothing: left out
            *(row(name, 300, events=(None, None, 0)) for name in (GATE_LIMIT, LENGTHS, LENGTHS_GATE_LIMIT)),
        ]
    )
    assert len(ROW_COLUMNS) == len(rows[0])
    assert what_if_table(rows)[2:] == ["| 1 of 1 x 30 s, 5xx 2 %, min 200 | 5000 | 0 (0.15) | 3.3 / 4.2 | 5.0 / 10.0 |"]
    [line] = sensitivity_table(rows, (5, 1, 1, 1.4, 2.0, 200))[2:]
    assert line.startswith("| 1.4 | 5000 | 0 (0.15) | 0 (0.15) | 0 (0.15) |")
