"""The human review sample: the fixed prompts, both variants' greedy outputs, and a blind A/B page.

``review.json`` (review_version 1) keeps the texts; ``review.html`` (jobs/evaluate/review_page.py)
shows them blind. Which of baseline/candidate is "A" is decided per item by a deterministic
seeded shuffle (``blind_sides``): the seed is the sample id, the shuffle is balanced (half the
items, rounded up, show the candidate as A), and the page embeds its result so the verdicts a
reviewer downloads can say which side the candidate was. jobs/evaluate/review_summary.py
recomputes it from review.json to check verdict files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.artifact_layout import REVIEW_FILE, REVIEW_PAGE_FILE
from jobs.evaluate.review_page import render_page

REVIEW_VERSION = 1
VARIANTS = ("baseline", "candidate")
SIDES = ("A", "B")


class ReviewError(ValueError):
    """A review sample or verdict file that does not follow review_version 1."""


def item_id(index: int) -> str:
    """Stable ids of the fixed prompts: p1, p2, ..."""
    return f"p{index + 1}"


def sample_id(models: Mapping[str, str], items: Sequence[Mapping[str, str]]) -> str:
    """A short content hash of the sample: the same prompts and outputs give the same id, and a
    verdict file names the sample it judged."""
    canonical = json.dumps({"models": dict(models), "items": list(items)}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def blind_sides(seed: str, ids: Sequence[str]) -> dict[str, str]:
    """Which side ("A" or "B") shows the candidate, per item: a balanced list (A, B, A, B, ...)
    put through a Fisher-Yates shuffle whose draws are SHA-256 of the seed (the sample id) and
    the step, so the result never depends on a library's PRNG: the page, review_summary and any
    later Python agree. Not a secret (the page carries it); it keeps the side out of the
    reviewer's view."""
    sides = [SIDES[i % 2] for i in range(len(ids))]
    for i in range(len(sides) - 1, 0, -1):
        j = int(hashlib.sha256(f"blind:{seed}:{i}".encode()).hexdigest(), 16) % (i + 1)
        sides[i], sides[j] = sides[j], sides[i]
    return dict(zip(ids, sides, strict=True))


def build_review(
    schemes: Mapping[str, str],
    prompts: Sequence[str],
    outputs: Mapping[str, Sequence[str]],
    *,
    method: str,
    max_new_tokens: int | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """The review sample of one evaluation: ``outputs`` maps baseline and candidate to one text
    per prompt (in prompt order), each cut at ``max_new_tokens`` by the generation."""
    for variant in VARIANTS:
        if len(outputs[variant]) != len(prompts):
            raise ReviewError(f"{variant} has {len(outputs[variant])} outputs for {len(prompts)} prompts")
    models = {variant: str(schemes[variant]) for variant in VARIANTS}
    items = [
        {"id": item_id(i), "prompt": prompt, **{variant: str(outputs[variant][i]) for variant in VARIANTS}}
        for i, prompt in enumerate(prompts)
    ]
    return {
        "review_version": REVIEW_VERSION,
        "sample_id": sample_id(models, items),
        "created_at": created_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": method,
        "max_new_tokens": max_new_tokens,
        "models": models,
        "items": items,
    }


def check_review(review: Any) -> dict[str, Any]:
    """A review sample as read back from review.json: version, models, items with unique ids, and
    a sample id that matches its content."""
    if not isinstance(review, dict):
        raise ReviewError("a review sample is a JSON object")
    if review.get("review_version") != REVIEW_VERSION:
        raise ReviewError(f"review_version {review.get('review_version')!r} is not {REVIEW_VERSION}")
    items = review.get("items")
    models = review.get("models")
    if not isinstance(items, list) or not items or not isinstance(models, dict):
        raise ReviewError("a review sample needs models and a non-empty list of items")
    fields = ("id", "prompt", *VARIANTS)
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in fields):
            raise ReviewError(f"every item needs the text fields {', '.join(fields)}")
    ids = [item["id"] for item in items]
    if len(set(ids)) != len(ids):
        raise ReviewError("item ids repeat")
    expected = sample_id(models, [{f: item[f] for f in fields} for item in items])
    if review.get("sample_id") != expected:
        raise ReviewError(f"sample_id {review.get('sample_id')!r} does not match its items ({expected})")
    return review


def write_review(review: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """review.json and review.html beside the report."""
    check_review(review)
    sides = blind_sides(review["sample_id"], [item["id"] for item in review["items"]])
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"review": output_dir / REVIEW_FILE, "review_page": output_dir / REVIEW_PAGE_FILE}
    paths["review"].write_text(json.dumps(review, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["review_page"].write_text(render_page(review, sides), encoding="utf-8")
    return paths
