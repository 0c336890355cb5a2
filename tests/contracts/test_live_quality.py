"""The live-quality metrics (contracts/live_quality.py): the one implementation the sampler and the pilot call."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from contracts.live_quality import (
    EMPTY_OR_REFUSAL,
    GREEDY_AGREEMENT,
    METRICS,
    NAMESPACE,
    OUTPUT_LENGTH_RATIO,
    PERPLEXITY_INCREASE,
    Generation,
    QualitySample,
    ReferenceItem,
    agreement,
    build_reference,
    framed,
    is_empty_or_refusal,
    judge,
    metric_data,
    output_start,
    quality_metrics,
    read_reference,
    reference_document,
)
from contracts.serving_protocol import NoPromptLogprobsError, PromptScore


def _ref(prompt: str, output: str, ids: tuple[int, ...], start: int, nll: float | None) -> ReferenceItem:
    return ReferenceItem(prompt, output, ids, start, nll)


def test_names_units_and_dimensions_are_cloudwatch_s():
    assert NAMESPACE == "LLMQ/Quality"
    assert PERPLEXITY_INCREASE.name == "PerplexityIncreasePercent"  # what the quality alarm has always read
    assert {m.unit for m in METRICS} <= {"Percent", "None"}  # CloudWatch StandardUnit names
    assert len({m.name for m in METRICS}) == len(METRICS)


def test_agreement_of_identical_outputs_is_one_and_of_disjoint_zero():
    assert agreement([["a", "b"]], [["a", "b"]]) == {
        "prompts": 1,
        "exact_match_rate": 1.0,
        "mean_prefix_agreement": 1.0,
    }
    assert agreement([["a", "b"]], [["c", "b"]])["mean_prefix_agreement"] == 0.0
    # Half of the longer output agrees from the start.
    assert agreement([["a", "b", "c", "d"]], [["a", "b"]])["mean_prefix_agreement"] == 0.5
    assert agreement([[]], [[]])["mean_prefix_agreement"] == 1.0
    with pytest.raises(ValueError):
        agreement([], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("   \n", True),
        ("I'm sorry, but I can't help with that.", True),
        ('  "I cannot do that', True),
        ("I’m sorry", True),
        ("As an AI language model, I", True),
        ("Paris is the capital of France.", False),
        ("Sorry state of affairs, this weather.", False),
    ],
)
def test_empty_or_refusal(text, expected):
    assert is_empty_or_refusal(text) is expected


def test_output_start_is_where_the_prompt_tokens_end():
    assert output_start((5, 6, 7), (5, 6, 7, 8, 9)) == 3
    # The prompt's last token merged with the output's first: counted from the first difference.
    assert output_start((5, 6, 7), (5, 6, 70, 9)) == 2


def test_a_variant_judged_against_its_own_reference_agrees_fully_and_loses_nothing():
    ids = (1, 2, 3, 4)
    reference = [_ref("p", " a b c", ids, 1, 1.2)]
    own = PromptScore(ids, (-0.5, -0.4, -0.5, -0.3))  # nll of tokens 1.. = 0.4 + 0.5 + 0.3 = 1.2
    sample = quality_metrics(reference, [" a b c"], [own])
    assert sample.values[PERPLEXITY_INCREASE.name] == pytest.approx(0.0)
    assert sample.values[GREEDY_AGREEMENT.name] == 100.0
    assert sample.values[EMPTY_OR_REFUSAL.name] == 0.0
    assert sample.values[OUTPUT_LENGTH_RATIO.name] == 1.0
    assert sample.scored_tokens == 3 and sample.notes == []


def test_perplexity_increase_is_the_ratio_over_the_reference_output_tokens():
    ids = (1, 2, 3)
    reference = [_ref("p", " x y", ids, 1, 0.6), _ref("q", " z", (9, 8), 1, 0.1)]
    judged = [PromptScore(ids, (-9.0, -0.5, -0.4)), PromptScore((9, 8), (-9.0, -0.4))]
    sample = quality_metrics(reference, [" x w", ""], judged)
    # (0.9 + 0.4) judged vs (0.6 + 0.1) reference over 3 tokens; the prompt's tokens do not count.
    assert sample.values[PERPLEXITY_INCREASE.name] == pytest.approx(100 * (math.exp((1.3 - 0.7) / 3) - 1))
    assert sample.values[GREEDY_AGREEMENT.name] == pytest.approx(100 * (0.5 + 0.0) / 2)
    assert sample.values[EMPTY_OR_REFUSAL.name] == 50.0
    assert sample.values[OUTPUT_LENGTH_RATIO.name] == pytest.approx(2 / 3)


def test_without_logprobs_or_with_other_tokens_the_ratio_is_left_out_with_a_reason():
    reference = [_ref("p", " a", (1, 2), 1, 0.3)]
    no_logprobs = quality_metrics(reference, [" a"], [None])
    assert PERPLEXITY_INCREASE.name not in no_logprobs.values
    assert "no prompt log-probabilities" in " ".join(no_logprobs.notes)
    assert no_logprobs.values[GREEDY_AGREEMENT.name] == 100.0  # the rest is still computed
    other = quality_metrics(reference, [" a"], [PromptScore((1, 3), (-1.0, -1.0))])
    assert PERPLEXITY_INCREASE.name not in other.values
    assert "tokenized" in " ".join(other.notes)
    unscored = quality_metrics([_ref("p", " a", (), 0, None)], [" a"], [None])
    assert PERPLEXITY_INCREASE.name not in unscored.values and unscored.notes


class ToyModel:
    """Words are tokens (id = len(word)); ``bias`` lowers every log-probability (a worse model)."""

    def __init__(self, outputs: dict[str, str], bias: float = 0.0, logprobs: bool = True) -> None:
        self.outputs, self.bias, self.logprobs = outputs, bias, logprobs
        self.calls = 0

    def _score(self, text: str) -> PromptScore:
        ids = tuple(len(w) for w in text.split())[1:]
        return PromptScore(ids, tuple(-0.5 - self.bias for _ in ids))

    def generate(self, prompt: str) -> Generation:
        self.calls += 1
        return Generation(self.outputs[prompt], self._score(prompt) if self.logprobs else None)

    def score(self, text: str) -> PromptScore:
        self.calls += 1
        if not self.logprobs:
            raise NoPromptLogprobsError("none")
        return self._score(text)


def test_reference_then_judge_end_to_end_with_a_toy_model():
    prompts = ["say a b", "say c d e"]
    base = ToyModel({framed("say a b"): " one two three", framed("say c d e"): " four"})
    items, notes = build_reference(prompts, base.generate, base.score)
    assert notes == [] and base.calls == 4
    # "User: say a b\nAssistant:" is 5 toy tokens; 4 are scored (not the first), then the output.
    assert items[0].prompt == "User: say a b\nAssistant:"
    assert items[0].output_start == 4 and items[0].nll == pytest.approx(1.5)
    stored = read_reference(reference_document(items, source="t", created_at="now"))
    assert stored == items
    same = judge(stored, base.generate, base.score)
    assert same.values[PERPLEXITY_INCREASE.name] == pytest.approx(0.0)
    assert same.values[GREEDY_AGREEMENT.name] == 100.0
    worse = ToyModel({framed("say a b"): " one two four", framed("say c d e"): ""}, bias=0.1)
    judged = judge(stored, worse.generate, worse.score)
    assert judged.values[PERPLEXITY_INCREASE.name] == pytest.approx(100 * (math.exp(0.1) - 1))
    assert judged.values[EMPTY_OR_REFUSAL.name] == 50.0
    blind = judge(stored, ToyModel(worse.outputs, logprobs=False).generate, ToyModel({}, logprobs=False).score)
    assert PERPLEXITY_INCREASE.name not in blind.values and GREEDY_AGREEMENT.name in blind.values


def test_a_baseline_without_logprobs_gives_a_reference_without_scores():
    base = ToyModel({framed("p q"): " r"}, logprobs=False)
    items, notes = build_reference(["p q"], base.generate, base.score)
    assert items[0].nll is None and notes


def test_metric_data_is_one_datum_per_computed_metric_with_both_dimensions_and_the_unit():
    sample = QualitySample(values={PERPLEXITY_INCREASE.name: 2.5, OUTPUT_LENGTH_RATIO.name: float("nan")})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert metric_data("ep", "candidate", sample, at) == [
        {
            "MetricName": "PerplexityIncreasePercent",
            "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "candidate"}],
            "Timestamp": at,
            "Value": 2.5,
            "Unit": "Percent",
        }
    ]  # NaN is refused by PutMetricData: left out
