"""The human review sample (review.json) and its page (review.html): content, escaping, blind order."""

from __future__ import annotations

import json
import re

import pytest

from contracts.artifact_layout import REVIEW_FILE, REVIEW_PAGE_FILE
from jobs.evaluate.fidelity import DEFAULT_PROMPTS
from jobs.evaluate.review import ReviewError, blind_sides, build_review, check_review, write_review
from jobs.evaluate.review_page import TEMPLATE, page_data, render_page, script_json
from tests.jobs.evaluate.review_sample import BASELINE, CANDIDATE, HOSTILE, sample_review

DATA_RE = re.compile(r'<script id="review-data" type="application/json">(.*?)</script>', re.S)


def embedded(html: str) -> dict:
    match = DATA_RE.search(html)
    assert match, "the page holds its sample in a JSON script element"
    return json.loads(match.group(1))


def test_review_sample_has_every_prompt_with_both_outputs_and_a_content_id():
    review = sample_review()
    assert review["review_version"] == 1
    assert review["models"] == {"baseline": "BF16", "candidate": "W8A8"}
    assert [item["id"] for item in review["items"]] == [f"p{i}" for i in range(1, 9)]
    for item, prompt, base, cand in zip(review["items"], DEFAULT_PROMPTS, BASELINE, CANDIDATE, strict=True):
        assert item == {"id": item["id"], "prompt": prompt, "baseline": base, "candidate": cand}
    assert re.fullmatch(r"[0-9a-f]{16}", review["sample_id"])
    assert check_review(review) is review
    # The id is the content's: the same outputs give the same id, other outputs another.
    assert sample_review()["sample_id"] == review["sample_id"]
    assert sample_review([*CANDIDATE[:-1], "changed"])["sample_id"] != review["sample_id"]


def test_a_sample_whose_content_does_not_match_its_id_or_counts_is_refused():
    review = sample_review()
    review["items"][0]["candidate"] = "edited by hand"
    with pytest.raises(ReviewError, match="does not match its items"):
        check_review(review)
    with pytest.raises(ReviewError, match="7 outputs for 8 prompts"):
        build_review(
            {"baseline": "BF16", "candidate": "W8A8"},
            DEFAULT_PROMPTS,
            {"baseline": BASELINE, "candidate": CANDIDATE[:7]},
            method="m",
        )
    with pytest.raises(ReviewError, match="review_version"):
        check_review({**sample_review(), "review_version": 2})


def test_blind_order_is_deterministic_balanced_and_seeded():
    ids = [f"p{i}" for i in range(1, 9)]
    sides = blind_sides("93d18e5c6310edad", ids)
    assert sides == blind_sides("93d18e5c6310edad", ids)
    assert list(sides) == ids
    assert sorted(sides.values()) == ["A"] * 4 + ["B"] * 4
    orders = {"".join(blind_sides(f"seed-{n}", ids).values()) for n in range(40)}
    assert len(orders) > 10, "the seed must change the order"
    assert "".join(blind_sides("0000000000000000", ids).values()) == PINNED_ORDER
    odd = blind_sides("s", ["p1", "p2", "p3"])
    assert sorted(odd.values()) == ["A", "A", "B"]


# blind_sides("0000000000000000", p1..p8), computed once with SHA-256: a change to the shuffle
# would make pages already handed out disagree with review_summary.
PINNED_ORDER = "AABBABBA"


def test_the_page_holds_every_item_once_with_outputs_on_their_blind_side(tmp_path):
    review = sample_review()
    paths = write_review(review, tmp_path)
    assert paths == {"review": tmp_path / REVIEW_FILE, "review_page": tmp_path / REVIEW_PAGE_FILE}
    assert json.loads(paths["review"].read_text()) == review
    data = embedded(paths["review_page"].read_text(encoding="utf-8"))
    sides = blind_sides(review["sample_id"], [item["id"] for item in review["items"]])
    assert data["sample_id"] == review["sample_id"] and data["review_version"] == 1
    assert [item["id"] for item in data["items"]] == [item["id"] for item in review["items"]]
    for shown, item in zip(data["items"], review["items"], strict=True):
        cand = shown["candidate_was"]
        assert cand == sides[item["id"]]
        assert shown[cand] == item["candidate"]
        assert shown["B" if cand == "A" else "A"] == item["baseline"]
        assert shown["prompt"] == item["prompt"]
        assert "baseline" not in shown and "candidate" not in shown


def test_model_text_cannot_close_the_script_or_become_markup():
    review = sample_review()
    html = render_page(review, blind_sides(review["sample_id"], [i["id"] for i in review["items"]]))
    assert HOSTILE not in html
    assert html.count("</script>") == 2  # the data element and the page's own script
    assert "<img" not in html and "<b>bold" not in html
    data = embedded(html)
    assert HOSTILE in [value for item in data["items"] for value in (item["A"], item["B"])]
    text = script_json({"t": "a</script><!-- \u2028 & >"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"t": "a</script><!-- \u2028 & >"}


def test_the_template_writes_text_only_and_reaches_no_network():
    template = TEMPLATE.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in template, sink
    assert not re.search(
        r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|<link|\bsrc=|\bfetch\(|XMLHttpRequest", template, re.I
    )
    assert not re.search(r"\burl\(", template)  # no CSS resource
    assert "default-src 'none'" in template  # the page's policy blocks any request
    assert template.count("__REVIEW_DATA__") == 1


def test_page_data_keeps_only_what_the_page_shows():
    review = sample_review()
    data = page_data(review, blind_sides(review["sample_id"], [i["id"] for i in review["items"]]))
    assert set(data) == {"review_version", "sample_id", "created_at", "method", "max_new_tokens", "models", "items"}
    assert all(set(item) == {"id", "prompt", "A", "B", "candidate_was"} for item in data["items"])
