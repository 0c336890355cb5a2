"""The ONE reader of the jobs' text data: calibration (quantize) and validation (evaluate, pilot).

Three record shapes are accepted, one per JSONL line (extra keys such as ``id`` are ignored):

- ``{"text": "..."}``: used as is;
- ``{"messages": [{"role": ..., "content": ...}, ...]}``: rendered with the model's chat
  template (the caller passes it as ``render_messages``), so calibration sees the same
  special tokens as serving;
- ``{"prompt": "...", "completion": "..."}``: concatenated, as in non-conversational
  prompt/completion data sets.

Validation data may also be ``.txt`` files, each one ``text`` record (``find_files(...,
text_files=True)``). Without a chat template (the evaluate job scores raw text) messages are
joined by their contents (``join_contents``).

The shapes themselves are contracts/prompt_records.py's (the operator CLI writes them too).
Pure Python (no tokenizer import): the quantize job, the evaluate job and the pilot's input
checks share it, so a file one accepts the others accept; every error names the file and line.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.prompt_records import SHAPES, join_contents

SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIX = ".txt"
ChatRenderer = Callable[[list[dict[str, Any]]], str]


class RecordError(ValueError):
    """The data set cannot be used; the message names the file (and line) and the problem."""


@dataclass(frozen=True)
class Record:
    shape: str  # one of SHAPES
    data: dict[str, Any]
    source: str  # "file.jsonl:12", for messages that point at the line
    index: int  # position in the whole data set, for stable ordering


def find_files(location: Path, *, text_files: bool = False, what: str = "calibration data") -> list[Path]:
    """A data file, or every ``*.jsonl``/``*.json`` (and ``*.txt`` with ``text_files``) under a
    directory (a SageMaker channel), sorted."""
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise RecordError(f"{what} not found: {location} does not exist")
    suffixes = (*SUFFIXES, TEXT_SUFFIX) if text_files else SUFFIXES
    files = sorted(p for p in location.rglob("*") if p.is_file() and p.suffix in suffixes)
    if not files:
        kinds = "*.jsonl or *.txt" if text_files else "*.jsonl"
        raise RecordError(f"{what} not found: no {kinds} files in {location}")
    return files


def _shape_of(obj: Any, where: str) -> str:
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    present = [shape for shape, keys in SHAPES.items() if all(k in obj for k in keys)]
    if len(present) != 1:
        found = ", ".join(sorted(obj)) or "no keys"
        expected = '{"text"}, {"messages"} or {"prompt", "completion"}'
        kind = "ambiguous" if present else "unknown"
        raise RecordError(f"{where}: {kind} record shape (keys: {found}); expected {expected}")
    shape = present[0]
    if shape == "messages":
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise RecordError(f"{where}: messages must be a non-empty list")
        for i, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)
            ):
                raise RecordError(f"{where}: messages[{i}] must be an object with string role and content")
    else:
        for key in SHAPES[shape]:
            if not isinstance(obj[key], str):
                raise RecordError(f"{where}: {key} must be a string, got {type(obj[key]).__name__}")
        if not "".join(obj[k] for k in SHAPES[shape]).strip():
            raise RecordError(f"{where}: empty {' and '.join(SHAPES[shape])}")
    return shape


def load_records(files: Iterable[Path], *, root: Path | None = None, what: str = "calibration data") -> list[Record]:
    """Parse and validate every line (a ``.txt`` file is one text record); the first bad line
    stops loading with its location."""
    records: list[Record] = []
    files = list(files)
    for path in files:
        name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
        if path.suffix == TEXT_SUFFIX:
            obj = {"text": path.read_text(encoding="utf-8")}
            records.append(Record(_shape_of(obj, name), obj, name, len(records)))
            continue
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{name}:{number}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecordError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
                records.append(Record(_shape_of(obj, where), obj, where, len(records)))
    if not records:
        raise RecordError(f"{what} is empty: no records in " + ", ".join(p.name for p in files))
    return records


def files_sha256(files: Sequence[Path], *, root: Path | None = None) -> str:
    """One digest over the names and bytes of the files, in order: identifies the data set used."""
    digest = hashlib.sha256()
    for path in files:
        name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def select(records: Sequence[Record], count: int, seed: int) -> list[Record]:
    """``count`` records chosen with a seeded RNG (all of them, in order, when there are fewer)."""
    if count >= len(records):
        return list(records)
    # Reproducibility, not secrecy: a seeded PRNG is exactly what is wanted here.
    chosen = random.Random(seed).sample(range(len(records)), count)  # noqa: S311
    return [records[i] for i in sorted(chosen)]


def read_texts(
    location: Path, *, what: str = "validation data", render_messages: ChatRenderer = join_contents
) -> list[str]:
    """Every record's text under ``location`` (``.jsonl``/``.json``/``.txt``), in file order."""
    files = find_files(location, text_files=True, what=what)
    records = load_records(files, root=location if location.is_dir() else location.parent, what=what)
    return [record_text(r, render_messages) for r in records]


def record_text(record: Record, render_messages: ChatRenderer | None) -> str:
    if record.shape == "text":
        return str(record.data["text"])
    if record.shape == "prompt_completion":
        return str(record.data["prompt"]) + str(record.data["completion"])
    if render_messages is None:
        raise RecordError(f"{record.source}: messages records need a model with a chat template")
    return render_messages(record.data["messages"])


def write_jsonl(path: Path, texts: Sequence[str]) -> Path:
    """Write ``texts`` as ``{"text": ...}`` records, the plainest calibration shape; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for text in texts:
            fh.write(json.dumps({"text": text}) + "\n")
    return path
