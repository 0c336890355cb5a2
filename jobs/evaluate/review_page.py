"""review.html: one self-contained page (inline CSS and JS, no network) for a blind A/B review.

The template is ``review_page.html`` beside this module (the evaluate image copies the whole
package). The sample goes in as JSON inside ``<script type="application/json">``, escaped so no
text can close the element, and the page's script writes every text with ``textContent``: model
outputs are untrusted and never become markup.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).with_name("review_page.html")
PLACEHOLDER = "__REVIEW_DATA__"
# Inside a script element only "</script" (and "<!--") end or confuse the parser; escaping every
# <, > and & (and the two line separators JavaScript once rejected in strings) covers them all.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """JSON that is safe as the content of a <script> element and parses to ``value``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "".join(_SCRIPT_ESCAPES.get(ch, ch) for ch in text)


def page_data(review: Mapping[str, Any], sides: Mapping[str, str]) -> dict[str, Any]:
    """What the page needs: each item's prompt and its outputs as A and B (by ``sides``, which
    side shows the candidate), plus the side for the verdict file."""
    items = []
    for item in review["items"]:
        cand_side = sides[item["id"]]
        base_side = "B" if cand_side == "A" else "A"
        items.append(
            {
                "id": item["id"],
                "prompt": item["prompt"],
                cand_side: item["candidate"],
                base_side: item["baseline"],
                "candidate_was": cand_side,
            }
        )
    return {
        "review_version": review["review_version"],
        "sample_id": review["sample_id"],
        "created_at": review.get("created_at"),
        "method": review.get("method"),
        "max_new_tokens": review.get("max_new_tokens"),
        "models": review["models"],
        "items": items,
    }


def render_page(review: Mapping[str, Any], sides: Mapping[str, str]) -> str:
    template = TEMPLATE.read_text(encoding="utf-8")
    if template.count(PLACEHOLDER) != 1:
        raise ValueError(f"{TEMPLATE.name} must hold {PLACEHOLDER} exactly once")
    return template.replace(PLACEHOLDER, script_json(page_data(review, sides)))
