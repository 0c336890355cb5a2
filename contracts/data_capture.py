"""SageMaker data capture: the DataCaptureConfig the pipeline asks for, and how its files are read back.

SageMaker writes one JSON object per captured request, one per line, to
``<DestinationS3Uri><endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl`` (docs/aws-behaviour.md)::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "{\"inputs\": \"...\"}", "encoding": "JSON"},
                     "endpointOutput": {...}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-12-03T10:00:00Z"}, "eventVersion": "0"}

``data`` is the request body as text when its content type is listed in
``CaptureContentTypeHeader.JsonContentTypes`` (encoding ``JSON``), else base64 (encoding ``BASE64``).
The prompts are taken from the body as the serving protocols send them (contracts/serving_protocol.py):
LMI ``{"inputs": ...}``, OpenAI completions ``{"prompt": ...}`` and chat ``{"messages": [...]}``.
A prompt becomes a calibration record (contracts/prompt_records.py): ``{"text": ...}`` or, for chat,
``{"messages": ...}`` (so the quantize job renders it with the chat template, as serving does).
Standard library only: the input-drift function and the operator CLI both read captures through it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

# Content types SageMaker stores as JSON text (not base64): what the serving protocols send.
JSON_CONTENT_TYPES: Final = ("application/json",)
CAPTURE_MODES: Final = ("Input", "Output")


def data_capture_config(destination_uri: Any, sampling_percentage: int, kms_key_id: Any) -> dict[str, Any]:
    """The DataCaptureConfig of CreateEndpointConfig (request and response, JSON kept readable, SSE-KMS)."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": sampling_percentage,
        "DestinationS3Uri": destination_uri,
        "KmsKeyId": kms_key_id,
        "CaptureOptions": [{"CaptureMode": mode} for mode in CAPTURE_MODES],
        "CaptureContentTypeHeader": {"JsonContentTypes": list(JSON_CONTENT_TYPES)},
    }


def _content(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str))
    return None


def _texts(value: Any) -> list[str]:
    """A prompt field that is a string or a list of strings (token-id prompts are not text: skipped)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def prompt_records(body: Any) -> list[dict[str, Any]]:
    """The calibration records of one request body (empty when it carries no text prompt)."""
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("messages"), list):
        messages = []
        for message in body["messages"]:
            content = _content(message) if isinstance(message, dict) else None
            if content is None or not isinstance(message.get("role"), str):
                return []
            messages.append({"role": message["role"], "content": content})
        return [{"messages": messages}] if messages else []
    for key in ("inputs", "prompt"):
        if key in body:
            return [{"text": text} for text in _texts(body[key]) if text.strip()]
    return []


def request_body(line: str) -> Any:
    """The request body of one capture line (None when the line has no readable JSON input)."""
    try:
        event = json.loads(line)
        captured = event["captureData"]["endpointInput"]
        data, encoding = captured["data"], str(captured.get("encoding", "")).upper()
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(data, str):
        return data
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8") if encoding == "BASE64" else data
        return json.loads(text)
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        return None


@dataclass
class CapturedPrompts:
    """Prompts read from capture lines, in order; lines without a readable prompt are counted, not kept."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    unreadable: int = 0

    def add_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            if not line.strip():
                continue
            self.lines += 1
            found = prompt_records(request_body(line))
            if not found:
                self.unreadable += 1
            self.records.extend(found)


def deduplicated(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without exact repeats (first occurrence kept, order kept)."""
    seen: set[str] = set()
    out = []
    for record in records:
        key = json.dumps(record, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out
