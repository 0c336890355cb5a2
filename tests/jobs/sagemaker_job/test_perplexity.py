"""The one perplexity (jobs/sagemaker_job/perplexity.py): which tokens are scored, with what context."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from jobs.sagemaker_job.perplexity import LoadedModel, perplexity, sliding_windows


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(4096, 512, 256), (1000, 512, 256), (7, 4, 1), (10, 10, 10), (10, 20, 5)]
)
def test_every_position_after_the_first_is_scored_exactly_once(n, window, stride):
    scored: list[int] = []
    for begin, end, first in sliding_windows(n, window, stride):
        assert end - begin <= window and begin < first <= end
        scored += range(first, end)
    assert scored == list(range(1, n))


def test_scored_tokens_after_the_first_window_keep_window_minus_stride_of_context():
    for begin, _end, first in sliding_windows(4096, 512, 256)[1:]:
        assert first - begin >= 512 - 256


def test_stride_equal_to_window_is_non_overlapping_windows_whose_first_tokens_go_unscored():
    # Nothing in a window predicts its own first token: positions 4 and 8 are left out.
    assert sliding_windows(12, 4, 4) == [(0, 4, 1), (4, 8, 5), (8, 12, 9)]


def test_non_overlapping_windows_score_every_token_but_each_windows_first():
    ids = [i % UniformModel.vocab for i in range(100)]
    result = perplexity(LoadedModel(UniformModel(), None, 0.0), ids, window=32, stride=32)
    assert result["token_count"] == 100 - 4  # windows start at 0, 32, 64, 96
    assert result["perplexity"] == pytest.approx(UniformModel.vocab)


@pytest.mark.parametrize(("window", "stride"), [(1, 1), (4, 0), (4, 5)])
def test_bad_windows_are_refused(window, stride):
    with pytest.raises(ValueError, match="window"):
        sliding_windows(10, window, stride)


class UniformModel:
    """Equal logits for every token: the perplexity of any text is exactly the vocabulary size."""

    vocab = 50

    def __call__(self, chunk):
        return SimpleNamespace(logits=torch.zeros(1, chunk.shape[1], self.vocab))


def test_a_uniform_model_has_the_vocabulary_size_as_perplexity_and_n_minus_one_tokens_scored():
    ids = [i % UniformModel.vocab for i in range(1000)]
    result = perplexity(LoadedModel(UniformModel(), None, 0.0), ids, window=128, stride=64)
    assert result["token_count"] == 999
    assert result["perplexity"] == pytest.approx(UniformModel.vocab)
    assert result["mean_nll"] == pytest.approx(math.log(UniformModel.vocab))
