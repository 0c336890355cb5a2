"""The one records reader (jobs/sagemaker_job/records.py): record shapes, errors that name the line, sampling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobs.sagemaker_job import records as reader
from jobs.sagemaker_job.records import RecordError


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_three_record_shapes_become_text(tmp_path):
    write(
        tmp_path / "a.jsonl",
        [
            json.dumps({"text": "plain", "id": 1}),
            json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
            json.dumps({"prompt": "Q:", "completion": " A"}),
        ],
    )
    records = reader.load_records(reader.find_files(tmp_path), root=tmp_path)
    assert [r.shape for r in records] == ["text", "messages", "prompt_completion"]
    texts = [reader.record_text(r, lambda m: "<chat>" + m[0]["content"]) for r in records]
    assert texts == ["plain", "<chat>hi", "Q: A"]


def test_blank_lines_are_skipped_and_files_read_in_order(tmp_path):
    write(tmp_path / "b.jsonl", [json.dumps({"text": "second"})])
    write(tmp_path / "a.jsonl", ["", json.dumps({"text": "first"}), "  "])
    records = reader.load_records(reader.find_files(tmp_path), root=tmp_path)
    assert [r.data["text"] for r in records] == ["first", "second"]
    assert records[0].source == "a.jsonl:2"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"text": "ok"', "a.jsonl:2: malformed JSON"),
        ('{"input": "x"}', "a.jsonl:2: unknown record shape (keys: input)"),
        ('{"text": "x", "messages": []}', "a.jsonl:2: ambiguous record shape"),
        ('{"text": 3}', "a.jsonl:2: text must be a string"),
        ('{"text": "   "}', "a.jsonl:2: empty text"),
        ('{"messages": [{"role": "user"}]}', "a.jsonl:2: messages[0]"),
        ("[1, 2]", "a.jsonl:2: a record must be a JSON object"),
    ],
)
def test_bad_line_is_reported_with_file_and_line(tmp_path, line, expected):
    write(tmp_path / "a.jsonl", [json.dumps({"text": "fine"}), line])
    with pytest.raises(RecordError, match=re.escape(expected)):
        reader.load_records(reader.find_files(tmp_path), root=tmp_path)


def test_empty_set_and_missing_set_are_errors(tmp_path):
    write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(RecordError, match="empty"):
        reader.load_records(reader.find_files(tmp_path), root=tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not calibration data")
    with pytest.raises(RecordError, match=r"no \*\.jsonl files"):
        reader.find_files(tmp_path / "other")
    with pytest.raises(RecordError, match="does not exist"):
        reader.find_files(tmp_path / "missing")


def test_selection_is_deterministic_per_seed(tmp_path):
    records = [reader.Record("text", {"text": str(i)}, f"a:{i}", i) for i in range(50)]
    first = reader.select(records, 10, seed=3)
    assert first == reader.select(records, 10, seed=3)
    assert first != reader.select(records, 10, seed=4)
    assert reader.select(records, 99, seed=3) == records


def test_digest_changes_with_content(tmp_path):
    a = write(tmp_path / "a.jsonl", [json.dumps({"text": "x"})])
    before = reader.files_sha256([a], root=tmp_path)
    write(a, [json.dumps({"text": "y"})])
    assert reader.files_sha256([a], root=tmp_path) != before


def test_validation_data_is_read_by_the_same_reader_with_text_files(tmp_path):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    write(tmp_path / "a.jsonl", [json.dumps({"messages": messages})])
    (tmp_path / "b.txt").write_text("plain text file")
    assert reader.read_texts(tmp_path) == ["hi\nyo", "plain text file"]
    with pytest.raises(RecordError, match=re.escape("a.jsonl:1: unknown record shape")):
        write(tmp_path / "a.jsonl", [json.dumps({"prompt": "no completion"})])
        reader.read_texts(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match=r"validation data not found: no \*\.jsonl or \*\.txt files"):
        reader.read_texts(tmp_path / "empty")
    with pytest.raises(RecordError, match=r"no \*\.jsonl files"):
        reader.find_files(tmp_path / "empty")
