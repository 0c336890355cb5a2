"""A review sample for the review page's tests, and verdict files made as the page makes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.review_rule import preferred_of
from jobs.evaluate.fidelity import DEFAULT_PROMPTS
from jobs.evaluate.review import blind_sides, build_review

# Model outputs are untrusted: markup in them must show as text and never run.
HOSTILE = '</script><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & <b>bold</b>'

BASELINE = [
    "A list comprehension builds a new list from an iterable in one expression.\nIt replaces a short for loop.",
    "Waves fold on the sand\nsalt wind carries the gulls' cries\nthe tide keeps its time",
    "Paris.",
    "1. Know your reader.\n2. Show a working example first.\n3. Keep it up to date.",
    "A hash table maps keys to values through a hash function, so lookups take constant time on average.",
    "Buenos días.",
    "2, 3, 5, 7, 11.",
    "Sunlight scatters off air molecules, and blue light scatters the most (Rayleigh scattering).",
]
CANDIDATE = [
    "A list comprehension is a for loop written inside square brackets.\nIt makes a list.",
    "Blue water rises\nfoam writes on the quiet shore\ngulls hang in the wind",
    "Paris.",
    "1. Write for your reader.\n2. Give examples.\n3. Keep it short.",
    HOSTILE,
    "Buenos días.",
    "2, 3, 5, 7, 9.",
    "Because air scatters blue light more than red light.",
]


def sample_review(candidate: list[str] | None = None) -> dict[str, Any]:
    return build_review(
        {"baseline": "BF16", "candidate": "W8A8"},
        DEFAULT_PROMPTS,
        {"baseline": BASELINE, "candidate": candidate or CANDIDATE},
        method="served (temperature 0)",
        max_new_tokens=32,
        created_at="2026-12-03T12:00:00Z",
    )


def verdict_file(review: dict[str, Any], choices: dict[str, str], reviewer: str | None = None) -> dict[str, Any]:
    """What the page downloads for these choices (item id -> A, B, tie, both-bad)."""
    sides = blind_sides(review["sample_id"], [item["id"] for item in review["items"]])
    out: dict[str, Any] = {
        "review_version": 1,
        "sample_id": review["sample_id"],
        "verdicts": [
            {"id": i, "choice": c, "candidate_was": sides[i], "preferred": preferred_of(c, sides[i])}
            for i, c in choices.items()
        ],
    }
    if reviewer is not None:
        out["reviewer"] = reviewer
    return out


def choices_for(review: dict[str, Any], preferred: dict[str, str]) -> dict[str, str]:
    """The page choices that mean these outcomes (item id -> candidate, baseline, tie, both-bad)."""
    sides = blind_sides(review["sample_id"], [item["id"] for item in review["items"]])
    out = {}
    for item_id, outcome in preferred.items():
        if outcome in ("tie", "both-bad"):
            out[item_id] = outcome
        else:
            cand = sides[item_id]
            out[item_id] = cand if outcome == "candidate" else ("B" if cand == "A" else "A")
    return out


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path
