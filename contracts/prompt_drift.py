"""How far one set of prompts is from another: the input-drift statistic, defined once.

Two places compare prompt sets and must agree on the number: the live drift check (captured
traffic against the calibration set a model was quantized with) and the quantize job's
calibration fitness report (calibration set against the validation set). Neither has the
model's tokenizer at hand (a Lambda function has no ``transformers``), so both count *words*:
runs of letters and digits, and single punctuation marks, lower-cased.

Two named statistics, each in [0, 1]:
- ``length_ks``: the two-sample Kolmogorov-Smirnov statistic of the prompts' word counts (the
  largest gap between the two empirical distribution functions).
- ``token_jsd``: the Jensen-Shannon divergence (base 2) between the two word distributions,
  over the reference's ``TOP_WORDS`` most frequent words plus one bucket for every other word.
  Folding the long tail into one bucket keeps the statistic stable for a few hundred prompts:
  over a full vocabulary two samples of the same text differ mostly in rare words.

A set drifts when either statistic is above its threshold and both sets hold at least
``MIN_PROMPTS`` prompts (below that nothing is judged). Standard library only.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

# Words of the reference kept by name; every other word falls into OTHER.
TOP_WORDS: Final = 200
OTHER: Final = "<other>"
# Fewer prompts than this on either side: no judgement. Measured (benchmarks/prompt_drift_thresholds.py,
# docs/benchmarks.md "Input-drift thresholds"): at 50 observed prompts two samples of one population of
# short prompts still exceed the word threshold in 8.5 % of draws; from 100 on, in none of 200.
MIN_PROMPTS: Final = 100
# Thresholds of the named statistics, from the same benchmark: above every same-population draw from
# 100 prompts on (null p99: KS <= 0.18, JSD <= 0.14), below every shifted one (other lengths: KS p5
# >= 0.33; other domain or language: JSD p5 >= 0.17), so each shift is caught in >= 98.5 % of draws.
LENGTH_KS_THRESHOLD: Final = 0.3
TOKEN_JSD_THRESHOLD: Final = 0.15

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """The words a prompt is counted in: letter/digit runs and single punctuation marks, lower-cased."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class PromptProfile:
    """What the statistics need of a prompt set, small enough to store beside a model (JSON)."""

    count: int
    lengths: tuple[int, ...]  # word count of every prompt, sorted
    word_counts: dict[str, int]  # the most frequent words, plus OTHER for the rest
    duplicates: int  # prompts identical to an earlier one

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "lengths": list(self.lengths),
            "word_counts": dict(self.word_counts),
            "duplicates": self.duplicates,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptProfile:
        return cls(
            count=int(data["count"]),
            lengths=tuple(sorted(int(n) for n in data["lengths"])),
            word_counts={str(k): int(v) for k, v in data["word_counts"].items()},
            duplicates=int(data.get("duplicates", 0)),
        )


def profile(texts: Iterable[str], *, top_words: int = TOP_WORDS) -> PromptProfile:
    """The profile of a prompt set: lengths, the ``top_words`` most frequent words (+ OTHER), duplicates."""
    seen: set[str] = set()
    duplicates = 0
    lengths: list[int] = []
    counts: Counter[str] = Counter()
    for text in texts:
        if text in seen:
            duplicates += 1
        seen.add(text)
        tokens = words(text)
        lengths.append(len(tokens))
        counts.update(tokens)
    kept = dict(counts.most_common(top_words))
    other = sum(counts.values()) - sum(kept.values())
    if other:
        kept[OTHER] = kept.get(OTHER, 0) + other
    return PromptProfile(count=len(lengths), lengths=tuple(sorted(lengths)), word_counts=kept, duplicates=duplicates)


def length_ks(reference: PromptProfile, observed: PromptProfile) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of the word counts (0: same distribution, 1: disjoint)."""
    a, b = reference.lengths, observed.lengths
    if not a or not b:
        return 0.0
    return max(abs(bisect_right(a, x) / len(a) - bisect_right(b, x) / len(b)) for x in {*a, *b})


def _binned(counts: dict[str, int], bins: set[str]) -> dict[str, float]:
    total = sum(counts.values())
    if not total:
        return {}
    out: dict[str, float] = {}
    for word, n in counts.items():
        key = word if word in bins else OTHER
        out[key] = out.get(key, 0.0) + n / total
    return out


def token_jsd(reference: PromptProfile, observed: PromptProfile) -> float:
    """Jensen-Shannon divergence (base 2) of the word distributions over the reference's top words + OTHER."""
    bins = {w for w in reference.word_counts if w != OTHER}
    p, q = _binned(reference.word_counts, bins), _binned(observed.word_counts, bins)
    if not p or not q:
        return 0.0

    def kl_to_mean(x: dict[str, float], y: dict[str, float]) -> float:
        return sum(v * math.log2(2 * v / (v + y.get(k, 0.0))) for k, v in x.items() if v > 0)

    return max(0.0, min(1.0, 0.5 * kl_to_mean(p, q) + 0.5 * kl_to_mean(q, p)))


@dataclass(frozen=True)
class DriftScore:
    """Both statistics, and whether the observed set drifted from the reference."""

    length_ks: float
    token_jsd: float
    reference_prompts: int
    observed_prompts: int

    @property
    def judged(self) -> bool:
        return min(self.reference_prompts, self.observed_prompts) >= MIN_PROMPTS

    @property
    def drifted(self) -> bool:
        return self.judged and (self.length_ks > LENGTH_KS_THRESHOLD or self.token_jsd > TOKEN_JSD_THRESHOLD)

    def to_json(self) -> dict[str, Any]:
        return {
            "length_ks": round(self.length_ks, 4),
            "token_jsd": round(self.token_jsd, 4),
            "length_ks_threshold": LENGTH_KS_THRESHOLD,
            "token_jsd_threshold": TOKEN_JSD_THRESHOLD,
            "reference_prompts": self.reference_prompts,
            "observed_prompts": self.observed_prompts,
            "judged": self.judged,
            "drifted": self.drifted,
        }


def drift(reference: PromptProfile, observed: PromptProfile) -> DriftScore:
    """How far ``observed`` is from ``reference`` (the calibration set, for the live check)."""
    return DriftScore(
        length_ks=length_ks(reference, observed),
        token_jsd=token_jsd(reference, observed),
        reference_prompts=reference.count,
        observed_prompts=observed.count,
    )
