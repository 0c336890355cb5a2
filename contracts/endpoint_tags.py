"""Endpoint tags: how a run, the rollback function and people see where an endpoint stands.

The state machine tags the endpoint it canaries; the rollback function acts on
those tags alone (no running execution needed), and the canary guard reads them
before every step. docs/contracts.md lists them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

TAG_PHASE: Final = "llmq:phase"
TAG_MODEL: Final = "llmq:model-name"
TAG_RUN: Final = "llmq:run-id"
TAG_PACKAGE: Final = "llmq:model-package-arn"
# The single-variant config to restore after a promotion (the platform team's own, any name).
TAG_LAST_APPROVED: Final = "llmq:last-approved-config"
TAG_PROMOTED_AT: Final = "llmq:promoted-at"
# Set by the rollback function beside rolling-back: the phase the rollback started from.
TAG_ROLLBACK_FROM: Final = "llmq:rollback-from-phase"

# The candidate joined the endpoint at weight 0 and is being evaluated there: no user sees it,
# the state machine owns the outcome (a failed gate removes it), so the rollback function does
# not act on its alarms (the evaluation's load test may trip them on purpose).
PHASE_EVALUATING: Final = "evaluating"
PHASE_CANARY: Final = "canary"
PHASE_PROMOTED: Final = "promoted"
PHASE_ROLLING_BACK: Final = "rolling-back"
PHASE_ROLLED_BACK: Final = "rolled-back"
PHASE_ROLLBACK_FAILED: Final = "rollback-failed"
# Phases the rollback function acts from (not PHASE_EVALUATING: see above).
ACTIVE_PHASES: Final = (PHASE_CANARY, PHASE_PROMOTED)
# A rollback that has not reached its expected state: the function stays armed, and no new
# canary may start on the endpoint.
UNFINISHED_PHASES: Final = (PHASE_ROLLING_BACK, PHASE_ROLLBACK_FAILED)

# The canary's second production variant; the serving variant keeps its own name
# (StageConfig.serving_variant, default DEFAULT_SERVING_VARIANT).
CANDIDATE_VARIANT: Final = "candidate"
DEFAULT_SERVING_VARIANT: Final = "AllTraffic"


def tag_time(value: str | None) -> datetime | None:
    """A time tag's value (ISO-8601; ``Z`` or an offset, none read as UTC), or None if absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
