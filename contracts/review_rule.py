"""The human review's go/no-go rule, defined once: the evaluate job's review summary and the operator's
``approve-after-review`` both decide with it.

A verdict says which side a reviewer preferred on the blind page (``choice`` A, B, tie or both-bad, and
``candidate_was`` A or B). The candidate passes (go) when the baseline is preferred in at most
``MAX_NET_BASELINE_PCT`` percent of the judged verdicts more than the candidate is; ties and
"both bad" count for neither side. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

CHOICES: Final = ("A", "B", "tie", "both-bad")
OUTCOMES: Final = ("candidate", "baseline", "tie", "both-bad")
MAX_NET_BASELINE_PCT: Final = 15.0


def preferred_of(choice: str, candidate_was: str) -> str:
    """What a choice means once the blind side is known."""
    if choice in ("tie", "both-bad"):
        return choice
    return "candidate" if choice == candidate_was else "baseline"


def tally(verdicts: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Counts and shares of each outcome over verdicts carrying ``preferred``."""
    counts = {outcome: sum(v["preferred"] == outcome for v in verdicts) for outcome in OUTCOMES}
    judged = len(verdicts)
    shares = {k: round(100 * n / judged, 1) if judged else None for k, n in counts.items()}
    return {"judged": judged, "counts": counts, "shares_pct": shares}


def decide(overall: dict[str, Any], max_net_pct: float = MAX_NET_BASELINE_PCT) -> dict[str, Any]:
    """go / no-go of a tally (``decision``), with the net baseline preference it rests on."""
    counts, judged = overall["counts"], overall["judged"]
    net = counts["baseline"] - counts["candidate"]
    net_pct = round(100 * net / judged, 1)
    passed = net_pct <= max_net_pct
    return {
        "decision": "go" if passed else "no-go",
        "net_baseline_preferred": net,
        "net_baseline_preferred_pct": net_pct,
        "max_net_baseline_pct": max_net_pct,
        "rule": f"go when (baseline preferred - candidate preferred) / judged <= {max_net_pct:g} %; "
        "ties and both-bad count for neither",
    }
