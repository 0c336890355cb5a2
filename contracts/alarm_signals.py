"""The alarms of a monitored endpoint: their names, and which of them roll back.

Per endpoint, per role (``baseline``: the serving variant, whatever its name;
``candidate``: the canary variant) and per signal: ``<endpoint>-<role>-<signal>``;
plus one composite ``<endpoint>-canary``. The monitoring stack creates them, the
validate function lists the candidate's for the bake checks, the rollback function
parses an alarm's name back into (endpoint, role, signal).
"""

from __future__ import annotations

from typing import Final

SIGNALS: Final = ("latency-p95", "latency-p95-vs-baseline", "5xx", "4xx", "quality")
# The absolute ModelLatency alarm only notifies: an LLM's latency grows with its output
# length, so it would roll back long completions (docs/monitoring.md).
ROLLBACK_SIGNALS: Final = ("latency-p95-vs-baseline", "5xx", "4xx", "quality")
NOTIFY_ONLY_SIGNALS: Final = tuple(s for s in SIGNALS if s not in ROLLBACK_SIGNALS)
ROLE_BASELINE: Final = "baseline"
ROLE_CANDIDATE: Final = "candidate"
ROLES: Final = (ROLE_BASELINE, ROLE_CANDIDATE)
COMPOSITE_SUFFIX: Final = "canary"


def alarm_name(endpoint: str, role: str, signal: str) -> str:
    if role not in ROLES or signal not in SIGNALS:
        raise ValueError(f"no alarm for role {role!r} and signal {signal!r}")
    return f"{endpoint}-{role}-{signal}"


def composite_alarm_name(endpoint: str) -> str:
    return f"{endpoint}-{COMPOSITE_SUFFIX}"


def candidate_rollback_alarms(endpoint: str) -> list[str]:
    """The candidate's alarms that roll back: what the bake checks read."""
    return [alarm_name(endpoint, ROLE_CANDIDATE, signal) for signal in ROLLBACK_SIGNALS]


def parse_alarm_name(name: str, endpoints: tuple[str, ...] | list[str]) -> tuple[str, str | None, str | None] | None:
    """(endpoint, role, signal) of one of ``endpoints``' alarms; role and signal are None for the composite.

    The longest endpoint name wins, so ``chat`` and ``chat-b`` are told apart.
    """
    for endpoint in sorted(endpoints, key=len, reverse=True):
        if not name.startswith(f"{endpoint}-"):
            continue
        rest = name[len(endpoint) + 1 :]
        if rest == COMPOSITE_SUFFIX:
            return endpoint, None, None
        for role in ROLES:
            if rest.startswith(f"{role}-") and rest[len(role) + 1 :] in SIGNALS:
                return endpoint, role, rest[len(role) + 1 :]
    return None
