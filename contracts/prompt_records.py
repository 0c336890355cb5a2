"""The record shapes of a calibration or validation set (JSONL, one record a line), defined once.

The jobs read them (jobs/sagemaker_job/records.py: validation, chat templates, errors with line
numbers); the operator CLI writes them (``calibration-from-capture``) and the input-drift check
compares captured prompts with a calibration set as plain text. Three shapes:

- ``{"text": "..."}``;
- ``{"messages": [{"role": ..., "content": ...}, ...]}`` (rendered with the model's chat template
  by the quantize job; as plain text, the contents joined by newlines);
- ``{"prompt": "...", "completion": "..."}`` (concatenated).

Standard library only.
"""

from __future__ import annotations

from typing import Any, Final

SHAPES: Final = {"text": ("text",), "messages": ("messages",), "prompt_completion": ("prompt", "completion")}


def join_contents(messages: list[dict[str, Any]]) -> str:
    """Messages as plain text (their contents, one per line), where no chat template applies."""
    return "\n".join(str(m["content"]) for m in messages)


def plain_text(record: dict[str, Any]) -> str:
    """A record's text without any chat template: what the drift statistic counts words of."""
    if "messages" in record:
        return join_contents(record["messages"])
    if "prompt" in record and "completion" in record:
        return str(record["prompt"]) + str(record["completion"])
    return str(record["text"])
