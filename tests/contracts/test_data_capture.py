"""contracts/data_capture.py: capture lines as SageMaker writes them -> prompts -> calibration records."""

from __future__ import annotations

import base64
import json
from typing import Any

from contracts.data_capture import CapturedPrompts, data_capture_config, deduplicated, prompt_records, request_body
from contracts.prompt_records import plain_text


def line(body, *, encoding="JSON", content_type="application/json"):
    """One line of a capture file (docs/aws-behaviour.md): the input as JSON text or base64."""
    text = json.dumps(body) if not isinstance(body, str) else body
    data = base64.b64encode(text.encode()).decode() if encoding == "BASE64" else text
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": content_type,
                    "mode": "INPUT",
                    "data": data,
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps({"generated_text": "x"}),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": "9f1c", "inferenceTime": "2026-12-03T10:00:00Z"},
            "eventVersion": "0",
        }
    )


def test_lmi_openai_completion_and_chat_bodies_become_records():
    assert prompt_records({"inputs": "hello", "parameters": {"max_new_tokens": 8}}) == [{"text": "hello"}]
    assert prompt_records({"model": "m", "prompt": ["a", "b"]}) == [{"text": "a"}, {"text": "b"}]
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    assert prompt_records(chat) == [{"messages": chat["messages"]}]
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url"}]}]}
    assert prompt_records(parts) == [{"messages": [{"role": "user", "content": "look"}]}]


def test_bodies_without_a_text_prompt_give_nothing():
    assert prompt_records({"prompt": [1, 2, 3]}) == []  # token ids are not text
    assert prompt_records({"inputs": "   "}) == []
    assert prompt_records({"instances": [1]}) == []
    assert prompt_records({"messages": [{"role": "user", "content": 3}]}) == []
    assert prompt_records(["not", "a", "dict"]) == []


def test_json_and_base64_encoded_inputs_are_both_read():
    assert request_body(line({"inputs": "x"})) == {"inputs": "x"}
    assert request_body(line({"inputs": "x"}, encoding="BASE64", content_type="application/octet-stream")) == {
        "inputs": "x"
    }
    assert request_body("not json") is None
    assert request_body(line("{broken", encoding="JSON")) is None
    assert request_body(json.dumps({"captureData": {}})) is None


def test_captured_prompts_counts_lines_and_unreadable_ones():
    captured = CapturedPrompts()
    captured.add_lines([line({"inputs": "a"}), "", line({"prompt": [1]}), line({"inputs": "b"})])
    assert captured.records == [{"text": "a"}, {"text": "b"}]
    assert (captured.lines, captured.unreadable) == (3, 1)


def test_deduplication_keeps_the_first_of_exact_repeats_in_order():
    records: list[dict[str, Any]] = [
        {"text": "a"},
        {"text": "b"},
        {"text": "a"},
        {"messages": [{"role": "user", "content": "a"}]},
    ]
    assert deduplicated(records) == [records[0], records[1], records[3]]


def test_plain_text_of_each_record_shape():
    assert plain_text({"text": "t"}) == "t"
    assert plain_text({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) == "a\nb"
    assert plain_text({"prompt": "p", "completion": "c"}) == "pc"


def test_the_capture_config_asks_for_input_and_output_json_as_text_and_the_key():
    config = data_capture_config("s3://b/models/m/r/capture/", 20, "arn:aws:kms:us-east-1:1:key/k")
    assert config["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert config["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    assert config["EnableCapture"] is True and config["InitialSamplingPercentage"] == 20
