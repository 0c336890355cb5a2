"""Poll intervals keep the longest execution the validator allows under Step Functions' 25,000 history events."""

from __future__ import annotations

import importlib

from tests.run_spec_support import DEFAULTS, example_spec, validate_spec

# The validate function's module, on sys.path through tests.run_spec_support.
budget = importlib.import_module("history_budget")
EVENTS_PER_POLL = budget.EVENTS_PER_POLL
FIXED_EVENTS = budget.FIXED_EVENTS
HISTORY_LIMIT = budget.HISTORY_LIMIT
endpoint_waits = budget.endpoint_waits

# Events outside the poll loops, counted per state from the definition's shape: 5 per task
# (entered, scheduled, started, succeeded, exited), 2 per Pass/Choice/Wait, and per canary step
# two guard checks, the weight call and the Map iteration's own events.
EVENTS_PER_STEP = 5 * 3 + 2 * 6 + 4


def _worst_case(spec: dict) -> tuple[dict, int]:
    outcome = validate_spec(spec, DEFAULTS)
    assert outcome.valid, outcome.message
    timing = outcome.run["timing"]
    steps = len(spec["canary"])
    polls = timing["quantize_max_polls"] + timing["evaluate_max_polls"]
    polls += endpoint_waits(steps) * timing["deploy_max_polls"]
    return timing, polls * EVENTS_PER_POLL + steps * EVENTS_PER_STEP


def test_the_longest_timings_the_validator_allows_stay_under_the_history_limit():
    spec = example_spec(
        canary=[{"weight": w, "bake_minutes": 24 * 60} for w in (5, 10, 20, 30, 40, 50, 60, 70, 80, 100)],
        timing={"poll_seconds": 60, "quantize_max_hours": 120, "evaluate_max_hours": 48, "deploy_max_minutes": 720},
        quantize_instance_type="ml.p4de.24xlarge",
    )
    timing, events = _worst_case(spec)
    assert events < HISTORY_LIMIT - FIXED_EVENTS // 2, (events, timing)
    # The interval grew to fit; the old fixed 60 s would have needed ~87,000 events for quantize alone.
    assert timing["job_poll_seconds"] > 60
    assert (120 * 3600 // 60) * EVENTS_PER_POLL > HISTORY_LIMIT


def test_default_timings_poll_about_once_a_minute():
    timing, events = _worst_case(example_spec(timing={"poll_seconds": 60}))
    assert timing["job_poll_seconds"] == 60
    # 13 bounded endpoint waits of up to an hour each: a little over a minute apart.
    assert 60 <= timing["endpoint_poll_seconds"] <= 120
    assert events < HISTORY_LIMIT
