"""stacks/operator_commands.py: a calibration set from captured traffic; approval after the human review."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from contracts.review_rule import decide, tally
from jobs.sagemaker_job.records import find_files, load_records, record_text
from stacks import operator_commands
from tests.contracts.test_data_capture import line


def write_capture(folder, name, bodies, **kwargs):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line(b, **kwargs) for b in bodies) + "\n")
    return path


def test_calibration_from_a_local_capture_folder_is_deduplicated_and_read_by_the_quantize_job(tmp_path, capsys):
    capture = tmp_path / "capture" / "llmq-dev-chat"
    chat = {"messages": [{"role": "user", "content": "What is our refund policy?"}]}
    write_capture(capture, "AllTraffic/2026/12/03/10/a.jsonl", [{"inputs": "Hello"}, {"inputs": "Hello"}, chat])
    write_capture(
        capture,
        "candidate/2026/12/03/11/b.jsonl",
        [{"prompt": ["Hello", "Summarize this"]}, {"prompt": [1, 2]}, chat],
        encoding="BASE64",
        content_type="application/octet-stream",
    )
    out = tmp_path / "calibration" / "captured.jsonl"

    assert operator_commands.main(["calibration-from-capture", str(tmp_path / "capture"), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert "files 2, lines 6, unreadable 1, prompts 6, duplicates 3, written 3" in printed
    assert "personal data" in printed
    # The quantize job's own reader accepts the file, in both shapes.
    records = load_records(find_files(out))
    assert [r.shape for r in records] == ["text", "messages", "text"]
    assert [record_text(r, lambda m: m[0]["content"]) for r in records] == [
        "Hello",
        "What is our refund policy?",
        "Summarize this",
    ]


def test_calibration_from_an_s3_capture_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        prefix = "models/llama/run-1/capture/llmq-dev-chat/AllTraffic/2026/12/03/10/"
        body = "\n".join(line({"inputs": f"prompt {i}"}) for i in range(5))
        s3.put_object(Bucket="artifacts", Key=f"{prefix}a.jsonl", Body=body.encode())
        s3.put_object(Bucket="artifacts", Key=f"{prefix}notes.txt", Body=b"ignored")
        out = tmp_path / "c.jsonl"
        counts = operator_commands.calibration_from_capture("s3://artifacts/models/llama/run-1/capture/", out)
    assert counts["files"] == 1 and counts["written"] == 5
    assert json.loads(out.read_text().splitlines()[0]) == {"text": "prompt 0"}


def test_no_prompt_in_the_capture_is_an_error_naming_the_source(tmp_path, capsys):
    write_capture(tmp_path, "a.jsonl", [{"prompt": [1, 2, 3]}])
    assert operator_commands.main(["calibration-from-capture", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no prompts found" in capsys.readouterr().err


def _verdict_file(path, sample, verdicts):
    path.write_text(json.dumps({"review_version": 1, "sample_id": sample, "verdicts": verdicts}))
    return path


def test_verdicts_of_different_samples_or_bad_choices_are_refused_before_any_aws_call(tmp_path, capsys):
    good = [{"id": "1", "choice": "A", "candidate_was": "A", "preferred": "candidate"}]
    a = _verdict_file(tmp_path / "a.json", "s1", good)
    b = _verdict_file(tmp_path / "b.json", "s2", good)
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/llmq-dev-m/1"
    assert operator_commands.main(["approve-after-review", "--model-package-arn", arn, str(a), str(b)]) == 2
    assert "different samples" in capsys.readouterr().err
    bad = _verdict_file(tmp_path / "c.json", "s1", [{"id": "1", "choice": "C", "candidate_was": "A"}])
    assert operator_commands.main(["approve-after-review", "--model-package-arn", arn, str(bad)]) == 2


@pytest.mark.parametrize(
    ("preferred", "decision"),
    [(["baseline"] * 3 + ["candidate"] * 2 + ["tie"] * 5, "go"), (["baseline"] * 3 + ["tie"] * 7, "no-go")],
)
def test_the_decision_is_the_review_rule_at_15_percent_net(tmp_path, preferred, decision):
    choice = {"candidate": "A", "baseline": "B", "tie": "tie"}
    verdicts = [{"id": str(i), "choice": choice[p], "candidate_was": "A"} for i, p in enumerate(preferred)]
    _, read = operator_commands.read_verdicts([_verdict_file(tmp_path / "v.json", "s", verdicts)])
    assert decide(tally(read))["decision"] == decision


def test_verdicts_of_another_sample_than_the_runs_review_are_refused(tmp_path, capsys):
    verdicts = [{"id": "1", "choice": "A", "candidate_was": "A"}]
    path = _verdict_file(tmp_path / "v.json", "s1", verdicts)
    review = tmp_path / "review.json"
    review.write_text(json.dumps({"sample_id": "s2", "items": []}))
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/llmq-dev-m/1"
    args = ["approve-after-review", "--model-package-arn", arn, str(path), "--review", str(review)]
    assert operator_commands.main(args) == 2
    assert "sample s1" in capsys.readouterr().err
