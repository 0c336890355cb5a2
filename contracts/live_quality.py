"""Live quality: what the quality sampler publishes, what the alarms watch, and how it is computed.

One implementation of the metrics, called by the sampler function (lambda/quality_sampler/, against
a SageMaker endpoint's variants) and by the pilot (jobs/pilot/, against its two local vLLM servers).
The alarms (stacks/endpoint_monitoring.py) read the names, dimensions and units below; a test
(tests/infra/test_quality_sampler.py) holds the synthesized alarms to them.

The method (docs/monitoring.md, "Live quality"):
1. a **reference** per prompt, from the baseline: its greedy output and its negative log-likelihood
   of that output given the prompt (``prompt + output`` scored with prompt log-probabilities; the
   output's tokens are those after the prompt's own). Every prompt is sent as a completion framed
   as a plain chat transcript (``PROMPT_FRAME``): the model's own chat template needs its tokenizer,
   which the sampler function does not have, and LMI's chat schema returns no prompt
   log-probabilities; a bare instruction makes an instruct model stop at once (the pilot's
   SmolLM2 wrote nothing for 3 of 4 bare prompts). Both variants see the same token stream;
2. the **judged variant** (the candidate during a canary, the serving variant after promotion)
   writes its own greedy output for every prompt and scores ``prompt + reference output``;
3. the metrics, over the whole sample:
   - ``PerplexityIncreasePercent``: ``100 * (exp((nll_judged - nll_reference) / tokens) - 1)`` over
     the reference outputs' tokens: the perplexity ratio of the baseline's own output, the live
     counterpart of the gate's perplexity increase (on other text, so not the same figure);
   - ``GreedyAgreementPercent``: the mean share of the longer output the two outputs agree on from
     the start, word by word (100: identical);
   - ``EmptyOrRefusalPercent``: the judged variant's outputs that are empty or open with a refusal;
   - ``OutputLengthRatio``: the judged variant's output words over the reference's.
A metric that cannot be computed (no prompt log-probabilities, different tokenization, nothing
written by the baseline) is left out and a note says why; the others are still published.

Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from contracts.serving_protocol import NoPromptLogprobsError, PromptScore

NAMESPACE: Final = "LLMQ/Quality"
# How a prompt is sent (a generic transcript base and instruct models both continue as an answer).
PROMPT_FRAME: Final = "User: {prompt}\nAssistant:"
# Every datapoint carries exactly these dimensions, in this order (an alarm matches on all of them).
DIMENSIONS: Final = ("EndpointName", "VariantName")
REFERENCE_VERSION: Final = 1


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str  # CloudWatch's StandardUnit name


PERPLEXITY_INCREASE: Final = MetricSpec("PerplexityIncreasePercent", "Percent")
GREEDY_AGREEMENT: Final = MetricSpec("GreedyAgreementPercent", "Percent")
EMPTY_OR_REFUSAL: Final = MetricSpec("EmptyOrRefusalPercent", "Percent")
OUTPUT_LENGTH_RATIO: Final = MetricSpec("OutputLengthRatio", "None")
METRICS: Final = (PERPLEXITY_INCREASE, GREEDY_AGREEMENT, EMPTY_OR_REFUSAL, OUTPUT_LENGTH_RATIO)
UNITS: Final = {spec.name: spec.unit for spec in METRICS}

# Openings of a refusal, compared case-insensitively after leading whitespace and quotes.
REFUSAL_OPENINGS: Final = (
    "i'm sorry",
    "i am sorry",
    "sorry, i",
    "i cannot",
    "i can't",
    "i can not",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "as an ai",
)


def agreement(baseline: Sequence[Sequence[Any]], candidate: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Exact-match rate and mean agreeing-prefix share of greedy outputs (1.0 = identical).

    Each output is a sequence (token ids or words); the prefix share of a pair is the length of
    their common start over the longer one's (two empty outputs agree fully).
    """
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("agreement needs the same, non-empty prompt set for both models")
    exact = 0
    prefix_shares = []
    for base, cand in zip(baseline, candidate, strict=True):
        if list(base) == list(cand):
            exact += 1
        common = 0
        for a, b in zip(base, cand, strict=False):
            if a != b:
                break
            common += 1
        longest = max(len(base), len(cand))
        prefix_shares.append(common / longest if longest else 1.0)
    return {
        "prompts": len(baseline),
        "exact_match_rate": exact / len(baseline),
        "mean_prefix_agreement": sum(prefix_shares) / len(prefix_shares),
    }


def is_empty_or_refusal(text: str) -> bool:
    opening = text.strip().lstrip("\"'“ ").lower().replace("’", "'")
    return not opening or opening.startswith(REFUSAL_OPENINGS)


def output_start(prompt_ids: Sequence[int], full_ids: Sequence[int]) -> int:
    """Where the output's tokens begin in ``prompt + output``: after the prompt's tokens they share.

    Both lists leave out the first token (it has no log-probability). A prompt whose last token
    merges with the output's first is counted from the first token that differs.
    """
    start = 0
    for a, b in zip(prompt_ids, full_ids, strict=False):
        if a != b:
            break
        start += 1
    return start


@dataclass(frozen=True)
class ReferenceItem:
    """One prompt's baseline output and, when the server gave log-probabilities, its score."""

    prompt: str
    output: str
    token_ids: tuple[int, ...] = ()  # of prompt + output, after the first token
    output_start: int = 0  # index in token_ids where the output's tokens begin
    nll: float | None = None  # the baseline's summed negative log-likelihood of those tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "output": self.output,
            "token_ids": list(self.token_ids),
            "output_start": self.output_start,
            "nll": self.nll,
        }


@dataclass(frozen=True)
class Generation:
    """A greedy output, and the prompt's scored tokens when the server returned them."""

    text: str
    prompt_score: PromptScore | None = None


def generation_of(answer: Any, text: Callable[[Any], str], score: Callable[[Any], PromptScore] | None) -> Generation:
    """A server's answer as a Generation: its text (``text`` raises on an answer without one), and
    with ``score`` the prompt's scored tokens when the server returned them."""
    generated = text(answer)
    prompt_score = None
    if score is not None:
        try:
            prompt_score = score(answer)
        except NoPromptLogprobsError:
            prompt_score = None
    return Generation(generated, prompt_score)


# The two calls a variant answers: a greedy generation, and a prompt scored with one output token.
Generate = Callable[[str], Generation]
Score = Callable[[str], PromptScore]


def reference_item(prompt: str, generate: Generate, score: Score, notes: list[str]) -> ReferenceItem:
    """The baseline's reference for one prompt; without log-probabilities, the output alone."""
    generation = generate(prompt)
    if generation.prompt_score is None:
        notes.append("the baseline returned no prompt log-probabilities with its output: no perplexity ratio")
        return ReferenceItem(prompt, generation.text)
    try:
        full = score(prompt + generation.text)
    except NoPromptLogprobsError as exc:
        notes.append(f"the baseline returned no prompt log-probabilities: {exc}")
        return ReferenceItem(prompt, generation.text)
    start = output_start(generation.prompt_score.token_ids, full.token_ids)
    return ReferenceItem(prompt, generation.text, full.token_ids, start, -sum(full.logprobs[start:]))


def framed(prompt: str) -> str:
    return PROMPT_FRAME.format(prompt=prompt.strip())


def build_reference(prompts: Sequence[str], generate: Generate, score: Score) -> tuple[list[ReferenceItem], list[str]]:
    """The baseline's reference for ``prompts`` (framed with ``PROMPT_FRAME``; the items keep the
    framed text, which is what every variant is sent)."""
    notes: list[str] = []
    return [reference_item(framed(prompt), generate, score, notes) for prompt in prompts], sorted(set(notes))


def reference_document(items: Sequence[ReferenceItem], *, source: str, created_at: str) -> dict[str, Any]:
    """The reference as stored (contracts/artifact_layout.py ``quality_reference_key``)."""
    return {
        "reference_version": REFERENCE_VERSION,
        "source": source,
        "created_at": created_at,
        "items": [item.as_dict() for item in items],
    }


def read_reference(document: Mapping[str, Any]) -> list[ReferenceItem]:
    if document.get("reference_version") != REFERENCE_VERSION:
        raise ValueError(f"reference_version {document.get('reference_version')!r} is not {REFERENCE_VERSION}")
    items = document.get("items")
    if not isinstance(items, list) or not items:
        raise ValueError("a reference needs a non-empty list of items")
    return [
        ReferenceItem(
            prompt=str(item["prompt"]),
            output=str(item["output"]),
            token_ids=tuple(int(t) for t in item.get("token_ids") or ()),
            output_start=int(item.get("output_start") or 0),
            nll=None if item.get("nll") is None else float(item["nll"]),
        )
        for item in items
    ]


@dataclass
class QualitySample:
    """The metrics of one judged variant over one sample of prompts, and why any is missing."""

    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    prompts: int = 0
    scored_tokens: int = 0


def perplexity_increase(
    reference: Sequence[ReferenceItem], scores: Sequence[PromptScore | None]
) -> tuple[float | None, int, list[str]]:
    """``100 * (ppl_judged / ppl_reference - 1)`` over the reference outputs' tokens, the tokens
    scored, and why items were left out."""
    notes: list[str] = []
    judged = base = 0.0
    tokens = 0
    for item, score in zip(reference, scores, strict=True):
        count = len(item.token_ids) - item.output_start
        if item.nll is None or count <= 0:
            continue
        if score is None:
            notes.append("the judged variant returned no prompt log-probabilities")
            continue
        if score.token_ids != item.token_ids:
            notes.append("the judged variant tokenized a reference differently from the baseline")
            continue
        judged -= sum(score.logprobs[item.output_start :])
        base += item.nll
        tokens += count
    if not tokens:
        return None, 0, sorted(set(notes)) or ["no reference output has scored tokens"]
    return 100 * (math.exp((judged - base) / tokens) - 1), tokens, sorted(set(notes))


def quality_metrics(
    reference: Sequence[ReferenceItem], outputs: Sequence[str], scores: Sequence[PromptScore | None]
) -> QualitySample:
    """The four metrics of a judged variant's ``outputs`` (and its ``scores`` of ``prompt +
    reference output``, None where it returned none) against the ``reference``, prompt by prompt."""
    if not reference or len(outputs) != len(reference) or len(scores) != len(reference):
        raise ValueError("one output and one score (or None) per reference item")
    sample = QualitySample(prompts=len(reference))
    base_words = [item.output.split() for item in reference]
    judged_words = [text.split() for text in outputs]
    share = agreement(base_words, judged_words)["mean_prefix_agreement"]
    sample.values[GREEDY_AGREEMENT.name] = 100 * share
    sample.values[EMPTY_OR_REFUSAL.name] = 100 * sum(map(is_empty_or_refusal, outputs)) / len(outputs)
    base_length = sum(map(len, base_words))
    if base_length:
        sample.values[OUTPUT_LENGTH_RATIO.name] = sum(map(len, judged_words)) / base_length
    else:
        sample.notes.append("the reference outputs are empty: no output-length ratio")
    increase, tokens, notes = perplexity_increase(reference, scores)
    sample.notes.extend(notes)
    sample.scored_tokens = tokens
    if increase is not None:
        sample.values[PERPLEXITY_INCREASE.name] = increase
    return sample


def judge(reference: Sequence[ReferenceItem], generate: Generate, score: Score) -> QualitySample:
    """Run the judged variant over the reference's prompts and compute its metrics."""
    outputs: list[str] = []
    scores: list[PromptScore | None] = []
    for item in reference:
        outputs.append(generate(item.prompt).text)
        if item.nll is None:
            scores.append(None)
            continue
        try:
            scores.append(score(item.prompt + item.output))
        except NoPromptLogprobsError:
            scores.append(None)
    return quality_metrics(reference, outputs, scores)


def metric_data(endpoint: str, variant: str, sample: QualitySample, timestamp: datetime) -> list[dict[str, Any]]:
    """PutMetricData ``MetricData`` for one judged variant: one datum per computed metric."""
    dimensions = [{"Name": DIMENSIONS[0], "Value": endpoint}, {"Name": DIMENSIONS[1], "Value": variant}]
    return [
        {
            "MetricName": spec.name,
            "Dimensions": dimensions,
            "Timestamp": timestamp,
            "Value": float(sample.values[spec.name]),
            "Unit": spec.unit,
        }
        for spec in METRICS
        if spec.name in sample.values and math.isfinite(sample.values[spec.name])
    ]
