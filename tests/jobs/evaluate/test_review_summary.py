"""python -m jobs.evaluate.review_summary: counts, shares, the go/no-go rule, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from contracts.review_rule import MAX_NET_BASELINE_PCT
from jobs.evaluate.review_summary import main
from tests.jobs.conftest import ROOT
from tests.jobs.evaluate.review_sample import choices_for, sample_review, verdict_file, write_json


@pytest.fixture
def review(tmp_path):
    sample = sample_review()
    write_json(tmp_path / "review.json", sample)
    return sample


def outcomes(**by_item):
    return {f"p{key[1:]}": value for key, value in by_item.items()}


def files_for(tmp_path, review, per_reviewer):
    paths = []
    for name, preferred in per_reviewer.items():
        data = verdict_file(review, choices_for(review, preferred), reviewer=name)
        paths.append(write_json(tmp_path / f"verdicts-{name}.json", data))
    return paths


def test_counts_shares_per_reviewer_and_overall_and_a_go(tmp_path, review, capsys):
    paths = files_for(
        tmp_path,
        review,
        {
            "ada": outcomes(
                p1="tie",
                p2="candidate",
                p3="tie",
                p4="baseline",
                p5="both-bad",
                p6="tie",
                p7="baseline",
                p8="candidate",
            ),
            "bob": outcomes(p1="tie", p2="baseline", p3="tie", p4="candidate"),
        },
    )
    out = tmp_path / "summary.json"
    assert main([*map(str, paths), "--review", str(tmp_path / "review.json"), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["sample_id"] == review["sample_id"]
    assert summary["models"] == {"baseline": "BF16", "candidate": "W8A8"} and summary["items"] == 8
    ada, bob = summary["reviewers"]["ada"], summary["reviewers"]["bob"]
    assert ada["judged"] == 8 and ada["counts"] == {"candidate": 2, "baseline": 2, "tie": 3, "both-bad": 1}
    assert ada["shares_pct"] == {"candidate": 25.0, "baseline": 25.0, "tie": 37.5, "both-bad": 12.5}
    assert bob["counts"] == {"candidate": 1, "baseline": 1, "tie": 2, "both-bad": 0}
    overall = summary["overall"]
    assert overall["judged"] == 12 and overall["counts"] == {"candidate": 3, "baseline": 3, "tie": 5, "both-bad": 1}
    assert overall["shares_pct"]["tie"] == pytest.approx(41.7)
    assert summary["decision"] == "go" and summary["net_baseline_preferred"] == 0
    assert summary["not_judged"] == []
    printed = capsys.readouterr().out
    assert "2 reviewer(s), 12 verdicts" in printed and "BF16 vs W8A8" in printed
    assert re.search(r"^ada\s+8\s+2\s+25\.0 %", printed, re.M)
    assert re.search(r"^overall\s+12\s+3\s+25\.0 %\s+3\s+25\.0 %\s+5\s+41\.7 %\s+1\s+8\.3 %", printed, re.M)
    assert printed.strip().splitlines()[-1].startswith("GO: ")


@pytest.mark.parametrize(
    ("baseline", "candidate", "ties", "decision"),
    [
        (3, 0, 17, "go"),  # net 3 of 20 = 15 %: at the limit
        (4, 0, 16, "no-go"),  # 20 %
        (10, 8, 2, "go"),  # equally good but different: reviewers split
        (6, 0, 2, "no-go"),  # every differing item went to the baseline
    ],
)
def test_the_rule_is_the_net_share_of_verdicts_that_prefer_the_baseline(tmp_path, baseline, candidate, ties, decision):
    assert MAX_NET_BASELINE_PCT == 15.0
    review = sample_review()
    outcomes_list = ["baseline"] * baseline + ["candidate"] * candidate + ["tie"] * ties
    # Several reviewers of the 8 items: up to 8 verdicts each.
    per_reviewer = {}
    for r in range(0, len(outcomes_list), 8):
        chunk = outcomes_list[r : r + 8]
        per_reviewer[f"r{r // 8}"] = {f"p{i + 1}": o for i, o in enumerate(chunk)}
    paths = files_for(tmp_path, review, per_reviewer)
    out = tmp_path / "s.json"
    assert main([*map(str, paths), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["decision"] == decision
    assert summary["net_baseline_preferred"] == baseline - candidate
    assert summary["models"] is None  # no --review: the files alone


def test_items_nobody_judged_are_listed_and_the_reviewer_defaults_to_the_file_name(tmp_path, review, capsys):
    data = verdict_file(review, choices_for(review, {"p1": "candidate", "p2": "tie"}))
    path = write_json(tmp_path / "anon.json", data)
    assert main([str(path), "--review", str(tmp_path / "review.json")]) == 0
    printed = capsys.readouterr().out
    assert "not judged by anyone: p3, p4, p5, p6, p7, p8" in printed
    assert re.search(r"^anon\s+2", printed, re.M)


def bad(tmp_path, review, mutate):
    data = verdict_file(review, choices_for(review, {"p1": "candidate", "p2": "baseline"}), reviewer="ada")
    mutate(data)
    return write_json(tmp_path / "bad.json", data)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(review_version=2), "review_version 2 is not 1"),
        (lambda d: d.update(sample_id="ffffffffffffffff"), "verdicts for sample ffffffffffffffff, not"),
        (lambda d: d["verdicts"][0].update(choice="C"), "choice 'C' is not one of"),
        (lambda d: d["verdicts"][0].update(preferred="tie"), "contradicts choice"),
        (
            lambda d: d["verdicts"][0].update(
                candidate_was="B" if d["verdicts"][0]["candidate_was"] == "A" else "A",
                preferred="baseline" if d["verdicts"][0]["preferred"] == "candidate" else "candidate",
            ),
            "but the page showed the candidate as",
        ),
        (lambda d: d["verdicts"][0].update(id="p99"), "item 'p99' is not in the review sample"),
        (lambda d: d["verdicts"].append(dict(d["verdicts"][0])), "an item is judged twice"),
        (lambda d: d.update(verdicts=[]), "no verdicts in the given files"),
        (lambda d: d.update(verdicts="all good"), "verdicts must be a list"),
    ],
    ids=["version", "other-sample", "choice", "preferred", "side", "unknown-item", "twice", "empty", "not-a-list"],
)
def test_bad_verdict_files_fail_with_one_line_and_exit_2(tmp_path, review, capsys, mutate, message):
    path = bad(tmp_path, review, mutate)
    assert main([str(path), "--review", str(tmp_path / "review.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("review_summary: error: ") and message in err, err
    assert err.count("\n") == 1


def test_unreadable_files_other_samples_and_double_verdicts_fail_with_exit_2(tmp_path, review, capsys):
    good = bad(tmp_path, review, lambda d: None)
    cases = [
        ([str(tmp_path / "missing.json")], "cannot read verdict file: No such file or directory"),
        ([str(write_json(tmp_path / "x.json", {}))], "review_version None is not 1"),
        ([str(good), "--review", str(tmp_path / "nope.json")], "cannot read review sample"),
    ]
    (tmp_path / "garbage.json").write_text("{not json")
    cases.append(([str(tmp_path / "garbage.json")], "verdict file is not JSON"))
    other = verdict_file(sample_review(["other"] * 8), {"p1": "tie"}, reviewer="bob")
    cases.append(
        ([str(good), str(write_json(tmp_path / "other.json", other))], "the verdict files judge different samples")
    )
    again = write_json(tmp_path / "again.json", json.loads(good.read_text()))
    cases.append(([str(good), str(again)], "reviewer 'ada' judged item p1 in both"))
    tampered = dict(review, sample_id="0" * 16)
    cases.append(([str(good), "--review", str(write_json(tmp_path / "t.json", tampered))], "does not match its items"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("review_summary: error: ") and message in err, (argv, err)
        assert err.count("\n") == 1, err


def test_runs_as_a_module(tmp_path, review):
    paths = files_for(tmp_path, review, {"ada": {"p1": "tie"}})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.evaluate.review_summary",
            str(paths[0]),
            "--review",
            str(tmp_path / "review.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "GO: " in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.evaluate.review_summary", str(tmp_path / "none.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
