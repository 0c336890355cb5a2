"""The request and response shapes of the serving containers, as the clients read them.

Two protocols:
- ``lmi``: SageMaker's LMI container (djl-serving) with the vLLM rolling batch, reached through
  InvokeEndpoint. Its own schema ("LMI handlers Inference API Schema"): ``{"inputs": text,
  "parameters": {...}}``; ``details: true`` adds ``details``, and ``decoder_input_details: true``
  (vLLM only, not with streaming) adds ``details.prefill``: one token object (``id``, ``text``,
  ``log_prob``) per prompt token. With ``OPTION_TGI_COMPAT`` the answer is a one-element list.
- ``openai``: vLLM's OpenAI-compatible server (the pilot): ``POST /v1/completions`` with
  ``prompt_logprobs: 0`` returns ``choices[0].prompt_logprobs``, ``null`` for the first token and
  ``{token_id: {"logprob": ...}}`` for each other.

The evaluate job (jobs/evaluate/engine_fidelity.py) and the live-quality sampler both speak them
through this module. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

PROTOCOLS: Final = ("lmi", "openai")


class NoPromptLogprobsError(ValueError):
    """An answer without the prompt log-probabilities that were asked for."""


@dataclass(frozen=True)
class PromptScore:
    """The prompt's tokens after the first (the first has no context) and their log-probabilities."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


def lmi_body(text: str, *, max_new_tokens: int = 1, prompt_logprobs: bool = True) -> dict[str, Any]:
    """An LMI request; with ``prompt_logprobs`` the answer carries ``details.prefill``."""
    parameters: dict[str, Any] = {"max_new_tokens": max_new_tokens, "details": True}
    if prompt_logprobs:
        parameters["decoder_input_details"] = True
    return {"inputs": text, "parameters": parameters}


def _lmi_answer(body: Any) -> dict[str, Any]:
    if isinstance(body, list) and len(body) == 1:  # OPTION_TGI_COMPAT answers with a list
        body = body[0]
    if not isinstance(body, dict):
        raise NoPromptLogprobsError(f"not an LMI answer: {str(body)[:200]}")
    return body


def lmi_generated_text(body: Any) -> str:
    text = _lmi_answer(body).get("generated_text")
    if not isinstance(text, str):
        raise NoPromptLogprobsError("the answer has no generated_text")
    return text


def parse_lmi(body: Any) -> PromptScore:
    prefill = (_lmi_answer(body).get("details") or {}).get("prefill")
    if not prefill:
        raise NoPromptLogprobsError("the response has no details.prefill (LMI returns it for decoder_input_details)")
    ids, lps = [], []
    for token in prefill[1:]:
        value = token.get("log_prob") if isinstance(token, dict) else None
        if value is None:
            raise NoPromptLogprobsError(f"a prefill token has no log_prob: {str(token)[:200]}")
        ids.append(int(token["id"]))
        lps.append(float(value))
    return PromptScore(tuple(ids), tuple(lps))


def openai_body(model: str, text: str, *, max_tokens: int = 1, prompt_logprobs: bool = True) -> dict[str, Any]:
    """A greedy ``/v1/completions`` request; with ``prompt_logprobs`` the answer scores the prompt."""
    body: dict[str, Any] = {"model": model, "prompt": text, "max_tokens": max_tokens, "temperature": 0.0}
    if prompt_logprobs:
        body["prompt_logprobs"] = 0
    return body


def _first_choice(body: Any, field: str) -> Any:
    """``body["choices"][0][field]``, or None where the answer has no such thing."""
    try:
        return body["choices"][0][field]
    except (KeyError, IndexError, TypeError):
        return None


def openai_generated_text(body: Any) -> str:
    text = _first_choice(body, "text")
    if not isinstance(text, str):
        raise NoPromptLogprobsError("the answer has no choices[0].text")
    return text


def parse_openai(body: Any) -> PromptScore:
    entries = _first_choice(body, "prompt_logprobs")
    if not entries:
        raise NoPromptLogprobsError("the response has no choices[0].prompt_logprobs")
    ids, lps = [], []
    for entry in entries[1:]:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise NoPromptLogprobsError(f"a prompt_logprobs entry is not one token: {str(entry)[:200]}")
        ((token_id, info),) = entry.items()
        ids.append(int(token_id))
        lps.append(float(info["logprob"]))
    return PromptScore(tuple(ids), tuple(lps))
