"""The input-drift statistic: same sets score 0, disjoint sets score high, small sets are not judged."""

from __future__ import annotations

import random

import pytest

from contracts.prompt_drift import (
    MIN_PROMPTS,
    OTHER,
    PromptProfile,
    drift,
    length_ks,
    profile,
    token_jsd,
    words,
)

_ENGLISH = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "and",
    "looked",
    "at",
    "the",
    "dog",
    "while",
    "the",
    "sun",
    "went",
    "down",
    "over",
    "the",
    "hill",
]
_CODE = [
    "def",
    "return",
    "import",
    "self",
    "if",
    "else",
    "for",
    "in",
    "range",
    "print",
    "lambda",
    "yield",
    "class",
    "none",
    "true",
]


def _prompts(vocab: list[str], n: int, lengths: tuple[int, int], seed: int) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not a secret
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(*lengths))) for _ in range(n)]


def test_words_are_lowercased_runs_and_single_punctuation():
    assert words("Hello, World!! 42x") == ["hello", ",", "world", "!", "!", "42x"]


def test_profile_counts_duplicates_and_folds_the_tail_into_other():
    p = profile(["a b c", "a b c", "d e"], top_words=2)
    assert p.count == 3 and p.duplicates == 1 and p.lengths == (2, 3, 3)
    assert sum(p.word_counts.values()) == 8 and p.word_counts[OTHER] == 4


def test_profile_round_trips_through_json():
    p = profile(_prompts(_ENGLISH, 60, (3, 30), 1))
    assert PromptProfile.from_json(p.to_json()) == p


def test_two_samples_of_one_distribution_do_not_drift():
    score = drift(profile(_prompts(_ENGLISH, 300, (5, 40), 1)), profile(_prompts(_ENGLISH, 200, (5, 40), 2)))
    assert score.judged and not score.drifted
    assert score.length_ks < 0.15 and score.token_jsd < 0.02


def test_other_words_drift():
    score = drift(profile(_prompts(_ENGLISH, 300, (5, 40), 1)), profile(_prompts(_CODE, 200, (5, 40), 2)))
    assert score.drifted and score.token_jsd > 0.9


def test_other_lengths_drift():
    score = drift(profile(_prompts(_ENGLISH, 300, (5, 20), 1)), profile(_prompts(_ENGLISH, 200, (60, 120), 2)))
    assert score.drifted and score.length_ks == pytest.approx(1.0)


def test_too_few_prompts_are_not_judged():
    reference = profile(_prompts(_ENGLISH, 300, (5, 20), 1))
    few = profile(_prompts(_CODE, MIN_PROMPTS - 1, (60, 120), 2))
    score = drift(reference, few)
    assert not score.judged and not score.drifted and score.to_json()["drifted"] is False


def test_empty_sets_score_zero():
    empty = profile([])
    assert length_ks(empty, empty) == 0.0 and token_jsd(empty, empty) == 0.0
