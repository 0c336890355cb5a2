"""Verdict files from review.html -> counts, shares and a go/no-go (docs/evaluate.md "Human review").

    python -m jobs.evaluate.review_summary verdicts1.json [verdicts2.json ...] [--review review.json] [--json OUT]

Each verdict file is what the page downloads: ``{"review_version": 1, "sample_id", "reviewer"?,
"verdicts": [{"id", "choice", "candidate_was", "preferred"}]}``. All files must judge the same
sample (and, with ``--review``, the sample in that review.json, whose blind order is recomputed
to check each ``candidate_was``). A bad input prints one line and exits 2.

The rule (contracts/review_rule.py, shared with the operator's approve-after-review): the candidate
passes (GO) when the baseline is preferred in at most
``--max-net-baseline-pct`` (default 15) percent of the judged verdicts more than the candidate
is; ties and "both bad" count for neither side.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.review_rule import CHOICES, MAX_NET_BASELINE_PCT, OUTCOMES, decide, preferred_of, tally
from jobs.evaluate.review import REVIEW_VERSION, SIDES, ReviewError, blind_sides, check_review

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class VerdictFile:
    path: Path
    reviewer: str
    sample_id: str
    verdicts: list[dict[str, str]]


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReviewError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReviewError(f"{path}: {what} is not JSON: {exc}") from None


def check_verdict(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise ReviewError(f"{where}: a verdict is an object with an id")
    choice, side = raw.get("choice"), raw.get("candidate_was")
    if choice not in CHOICES:
        raise ReviewError(f"{where}: choice {choice!r} is not one of {', '.join(CHOICES)}")
    if side not in SIDES:
        raise ReviewError(f"{where}: candidate_was {side!r} is not A or B")
    expected = preferred_of(choice, side)
    if raw.get("preferred") != expected:
        raise ReviewError(f"{where}: preferred {raw.get('preferred')!r} contradicts choice {choice} ({expected})")
    return {"id": raw["id"], "choice": choice, "candidate_was": side, "preferred": expected}


def read_verdict_file(path: Path) -> VerdictFile:
    raw = read_json(path, "verdict file")
    if not isinstance(raw, dict):
        raise ReviewError(f"{path}: a verdict file is a JSON object")
    if raw.get("review_version") != REVIEW_VERSION:
        raise ReviewError(f"{path}: review_version {raw.get('review_version')!r} is not {REVIEW_VERSION}")
    sample, verdicts = raw.get("sample_id"), raw.get("verdicts")
    if not isinstance(sample, str) or not sample:
        raise ReviewError(f"{path}: no sample_id")
    if not isinstance(verdicts, list):
        raise ReviewError(f"{path}: verdicts must be a list")
    checked = [check_verdict(v, f"{path}: verdict {i + 1}") for i, v in enumerate(verdicts)]
    ids = [v["id"] for v in checked]
    if len(set(ids)) != len(ids):
        raise ReviewError(f"{path}: an item is judged twice")
    reviewer = raw.get("reviewer")
    name = reviewer.strip() if isinstance(reviewer, str) and reviewer.strip() else path.stem
    return VerdictFile(path, name, sample, checked)


def check_against_review(files: Sequence[VerdictFile], review: dict[str, Any]) -> None:
    """Every verdict names an item of the sample, with the side the page showed the candidate on."""
    sides = blind_sides(review["sample_id"], [item["id"] for item in review["items"]])
    for f in files:
        if f.sample_id != review["sample_id"]:
            raise ReviewError(f"{f.path}: verdicts for sample {f.sample_id}, not {review['sample_id']} (the review)")
        for v in f.verdicts:
            if v["id"] not in sides:
                raise ReviewError(f"{f.path}: item {v['id']!r} is not in the review sample")
            if v["candidate_was"] != sides[v["id"]]:
                raise ReviewError(
                    f"{f.path}: item {v['id']}: candidate_was {v['candidate_was']}, "
                    f"but the page showed the candidate as {sides[v['id']]}"
                )


def load(paths: Sequence[Path], review_path: Path | None) -> tuple[list[VerdictFile], dict[str, Any] | None]:
    files = [read_verdict_file(p) for p in paths]
    samples = sorted({f.sample_id for f in files})
    if len(samples) > 1:
        raise ReviewError(f"the verdict files judge different samples: {', '.join(samples)}")
    seen: dict[tuple[str, str], Path] = {}
    for f in files:
        for v in f.verdicts:
            first = seen.setdefault((f.reviewer, v["id"]), f.path)
            if first != f.path:
                raise ReviewError(f"reviewer {f.reviewer!r} judged item {v['id']} in both {first} and {f.path}")
    review = None
    if review_path is not None:
        try:
            review = check_review(read_json(review_path, "review sample"))
        except ReviewError as exc:
            raise ReviewError(str(exc) if str(exc).startswith(str(review_path)) else f"{review_path}: {exc}") from None
        check_against_review(files, review)
    if not any(f.verdicts for f in files):
        raise ReviewError("no verdicts in the given files")
    return files, review


def summarize(files: Sequence[VerdictFile], review: dict[str, Any] | None, max_net_pct: float) -> dict[str, Any]:
    by_reviewer: dict[str, list[dict[str, str]]] = {}
    for f in files:
        by_reviewer.setdefault(f.reviewer, []).extend(f.verdicts)
    pooled = [v for f in files for v in f.verdicts]
    overall = tally(pooled)
    judged_ids = {v["id"] for v in pooled}
    return {
        "summary_version": SUMMARY_VERSION,
        "sample_id": files[0].sample_id,
        "models": review["models"] if review else None,
        "items": len(review["items"]) if review else None,
        "not_judged": [i["id"] for i in review["items"] if i["id"] not in judged_ids] if review else None,
        "files": [str(f.path) for f in files],
        "reviewers": {name: tally(vs) for name, vs in by_reviewer.items()},
        "overall": overall,
        **decide(overall, max_net_pct),
    }


def _row(name: str, part: dict[str, Any]) -> str:
    cells = [f"{part['counts'][k]:>3} {part['shares_pct'][k]:5.1f} %" for k in OUTCOMES]
    return f"{name[:20]:<20} {part['judged']:>6}  " + "  ".join(f"{c:>11}" for c in cells)


def render(summary: dict[str, Any]) -> str:
    models = summary["models"]
    what = f" ({models['baseline']} vs {models['candidate']}, {summary['items']} items)" if models else ""
    lines = [
        f"review sample {summary['sample_id']}{what}: {len(summary['reviewers'])} reviewer(s), "
        f"{summary['overall']['judged']} verdicts",
        f"{'reviewer':<20} {'judged':>6}  " + "  ".join(f"{k:>11}" for k in OUTCOMES),
    ]
    lines += [_row(name, part) for name, part in summary["reviewers"].items()]
    lines.append(_row("overall", summary["overall"]))
    if summary["not_judged"]:
        lines.append(f"not judged by anyone: {', '.join(summary['not_judged'])}")
    lines.append(f"rule: {summary['rule']}")
    net, pct, limit = (
        summary[k] for k in ("net_baseline_preferred", "net_baseline_preferred_pct", "max_net_baseline_pct")
    )
    lines.append(
        f"{summary['decision'].upper()}: baseline preferred {net:+d} net of {summary['overall']['judged']} judged "
        f"({pct:+.1f} % {'<=' if pct <= limit else '>'} {limit:g} %)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.evaluate.review_summary", description="Summarize the verdicts downloaded from review.html"
    )
    parser.add_argument("verdicts", nargs="+", type=Path, help="verdict files downloaded from review.html")
    parser.add_argument("--review", type=Path, help="the review.json the page was made from (checks every verdict)")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    parser.add_argument("--max-net-baseline-pct", type=float, default=MAX_NET_BASELINE_PCT)
    args = parser.parse_args(argv)
    try:
        files, review = load(args.verdicts, args.review)
    except ReviewError as exc:
        print(f"review_summary: error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(files, review, args.max_net_baseline_pct)
    print(render(summary))
    if args.json:
        try:
            args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"review_summary: error: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
