"""Poll intervals that keep one execution under Step Functions' 25,000 history events.

A Standard execution that would add event 25,001 fails (Step Functions quotas,
docs/aws-behaviour.md). Every Describe + Wait poll adds 11 events (Wait entered
and exited, the poll counter Pass entered and exited, the Describe task's five
events, the status Choice entered and exited), so the poll interval, not the
job's length, sets the history size. The interval is derived from the longest
time each wait may take: the spec's ``poll_seconds`` is a floor, never a promise.
tests/workflow/test_history_budget.py runs the worst case the validator allows.
"""

from __future__ import annotations

import math

HISTORY_LIMIT = 25_000
EVENTS_PER_POLL = 11
# Shares of the limit: quantize + evaluate polls, endpoint polls, and everything else
# (validation, lookups, bake checks: about 90 events per canary step, cleanup paths).
JOB_POLL_EVENTS = 14_000
ENDPOINT_POLL_EVENTS = 7_000
FIXED_EVENTS = HISTORY_LIMIT - JOB_POLL_EVENTS - ENDPOINT_POLL_EVENTS


def endpoint_waits(steps: int) -> int:
    """Bounded endpoint waits on the longest path: before and after each mutation.

    Canary deploy (before, after), each step's weights (before, after), promotion
    (scaling check, before, after) and, on the failure path, the restore and the
    clean-up to a baseline-only config (before and after each).
    """
    return 2 + 2 * steps + 3 + 4


def poll_interval(requested: int, max_seconds: float, waits: int, budget: int) -> int:
    """The smallest interval >= ``requested`` whose worst-case polls fit ``budget`` events."""
    needed = math.ceil(max_seconds * waits * EVENTS_PER_POLL / budget)
    return max(requested, needed, 1)


def max_polls(max_seconds: float, interval: int) -> int:
    """Polls of one wait: its longest time at ``interval``, plus one to see the final state."""
    return math.ceil(max_seconds / interval) + 1
