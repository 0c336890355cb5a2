"""The live-quality sampler's metrics against the pilot's two local vLLM servers.

The same core the sampler function runs against a SageMaker endpoint (contracts/live_quality.py):
the baseline writes the reference (its greedy output and that output's score), then every served
model is judged against it, the baseline too as a self-check (agreement 100 %, perplexity ratio 0).
Only the transport differs: vLLM's ``/v1/completions`` (contracts/serving_protocol.py ``openai``)
instead of InvokeEndpoint with LMI's schema. A handful of prompts and short outputs keep it to
seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contracts.live_quality import Generation, build_reference, generation_of, judge
from contracts.serving_protocol import (
    NoPromptLogprobsError,
    PromptScore,
    openai_body,
    openai_generated_text,
    parse_openai,
)
from jobs.evaluate import Target, post_completion
from jobs.sagemaker_job.failure import JobFailureError

SAMPLE_PROMPTS = 4
MAX_NEW_TOKENS = 24


class ServedVariant:
    """One local server, greedy, through the OpenAI completions API."""

    def __init__(self, target: Target, max_new_tokens: int) -> None:
        self.target, self.max_new_tokens = target, max_new_tokens

    def generate(self, prompt: str, *, prompt_logprobs: bool = False) -> Generation:
        body = openai_body(self.target.model, prompt, max_tokens=self.max_new_tokens, prompt_logprobs=prompt_logprobs)
        answer = post_completion(self.target, body)
        try:
            return generation_of(answer, openai_generated_text, parse_openai if prompt_logprobs else None)
        except NoPromptLogprobsError as exc:  # no generated text at all
            raise JobFailureError(f"{self.target.describe()}: {exc}") from None

    def score(self, text: str) -> PromptScore:
        return parse_openai(post_completion(self.target, openai_body(self.target.model, text)))


def live_quality(
    targets: Mapping[str, Target],
    prompts: Sequence[str],
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Every target judged against the baseline's reference: ``{name: {metrics, notes, ...}}``."""
    base = ServedVariant(targets["baseline"], max_new_tokens)
    reference, notes = build_reference(prompts, lambda p: base.generate(p, prompt_logprobs=True), base.score)
    out: dict[str, dict[str, Any]] = {}
    for name, target in targets.items():
        variant = ServedVariant(target, max_new_tokens)
        sample = judge(reference, variant.generate, variant.score)
        out[name] = {
            "metrics": sample.values,
            "prompts": sample.prompts,
            "scored_tokens": sample.scored_tokens,
            "max_new_tokens": max_new_tokens,
            "notes": sorted(set(notes + sample.notes)),
        }
        shown = ", ".join(f"{key} {value:.3g}" for key, value in sorted(sample.values.items()))
        log(f"  live quality {name}: {shown}")
    return out
