"""The ONE perplexity of the project: exp(mean next-token NLL) with a sliding window.

Used by the evaluate job (the gate's figure), the pilot, the quantize tests and the CPU benchmark,
so a perplexity printed anywhere in this project means the same computation:

- the validation documents are tokenized one by one without special tokens and joined by the
  tokens of a blank line, cut at ``max_tokens`` (``tokenize_validation``);
- windows of ``window`` tokens advance by ``stride``; each window scores only the tokens the
  previous one did not, with the rest as context (the Hugging Face recipe for fixed-length
  models), so with ``stride < window`` every position 1..n-1 is scored exactly once (n - 1 tokens
  for n) and every scored token after the first window sees at least ``window - stride`` tokens of
  context;
- the model runs in float32 on the CPU (bf16 matmuls are slow on CPUs without AVX-512 BF16);
  a compressed-tensors checkpoint is decompressed by transformers on load.

Why not non-overlapping windows (what jobs/quantize_check.py used to do, with 1024-token
windows): each window's first tokens are predicted with almost no context, which inflates the
figure by an amount that depends on the window size, and the first token of every window is
never scored (4092 of 4096 tokens). The sliding window removes both effects; with ``stride ==
window`` it reduces to that method, first tokens of later windows unscored included (nothing in a
window predicts its own first token).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_WINDOW = 512
DEFAULT_STRIDE = 256


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    load_seconds: float


def load_model(path: Path, threads: int | None = None) -> LoadedModel:
    import torch  # noqa: PLC0415 - heavy; the pure helpers here run without it
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    return LoadedModel(model, tokenizer, time.perf_counter() - start)


def tokenize_validation(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[int]:
    """One token stream: documents separated by blank lines, cut at ``max_tokens``.

    Tokenized document by document and only as far as needed (the whole pydoc set is 60k
    tokens; a pilot scores a few thousand).
    """
    ids: list[int] = []
    separator: list[int] = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    for index, text in enumerate(texts):
        if index:
            ids += separator
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= max_tokens:
            break
    if len(ids) < 2:
        raise ValueError("the validation text is shorter than two tokens")
    return ids[:max_tokens]


def sliding_windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window.

    A window scores only the tokens the previous one did not, using the rest as context (the
    standard HF recipe for fixed-length models): every position 1..n-1 once when ``stride <
    window``. A window cannot score its own first token (nothing in it comes before), so with
    ``stride == window`` each later window's first token is left out, as non-overlapping windows do.
    """
    if window < 2 or not 0 < stride <= window:
        raise ValueError(f"need window >= 2 and 0 < stride <= window, got window={window} stride={stride}")
    spans = []
    prev_end = 1  # position 0 has no context and is never scored
    begin = 0
    while prev_end < n_tokens:
        end = min(begin + window, n_tokens)
        spans.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        begin += stride
        if end == n_tokens:
            break
    return spans


def perplexity(
    loaded: LoadedModel,
    token_ids: Sequence[int],
    *,
    window: int = DEFAULT_WINDOW,
    stride: int = DEFAULT_STRIDE,
    progress: Callable[[int, int], None] | None = None,
    device: Any = None,
) -> dict[str, Any]:
    """exp(mean NLL) over every token after the first; ``token_count`` = tokens scored.

    ``device``: where the model takes its inputs (default the CPU, where ``load_model`` puts it;
    the quantize job scores models that llm-compressor left on a GPU)."""
    import torch  # noqa: PLC0415

    ids = torch.tensor(list(token_ids), dtype=torch.long)
    spans = sliding_windows(len(ids), window, stride)
    nll_sum = 0.0
    scored = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for index, (begin, end, first) in enumerate(spans):
            chunk = ids[begin:end].unsqueeze(0)
            logits = loaded.model(chunk if device is None else chunk.to(device)).logits[0].float().cpu()
            # logits[i] predicts token i+1; score targets first..end-1.
            pred = logits[first - begin - 1 : end - begin - 1]
            target = ids[first:end]
            nll_sum += float(torch.nn.functional.cross_entropy(pred, target, reduction="sum"))
            scored += int(target.numel())
            if progress:
                progress(index + 1, len(spans))
    mean = nll_sum / scored
    return {
        "perplexity": math.exp(mean),
        "mean_nll": mean,
        "token_count": scored,
        "window": window,
        "stride": stride,
        "seconds": time.perf_counter() - start,
    }


def model_perplexity(
    model_dir: Path,
    texts: Sequence[str],
    *,
    max_tokens: int,
    window: int = DEFAULT_WINDOW,
    stride: int = DEFAULT_STRIDE,
) -> dict[str, Any]:
    """Load ``model_dir``, tokenize ``texts`` and return ``perplexity``'s result plus
    ``validation_tokens`` (tokens in the stream; ``token_count`` is the scored ones)."""
    loaded = load_model(model_dir)
    ids = tokenize_validation(loaded.tokenizer, texts, max_tokens)
    return {**perplexity(loaded, ids, window=window, stride=stride), "validation_tokens": len(ids)}


def chunk_perplexity(loaded: LoadedModel, chunks: Sequence[str]) -> dict[str, Any]:
    """The serving engine's figure (jobs/evaluate/engine_fidelity.py) computed with transformers.

    Each chunk is tokenized as a server tokenizes a completion prompt (special tokens added)
    and scored as one window: every token after the chunk's first, with the chunk before it as
    context. ``token_ids`` lets a caller check that the server saw the same tokens.
    """
    nll_sum = 0.0
    scored = 0
    token_ids: list[list[int]] = []
    start = time.perf_counter()
    for chunk in chunks:
        ids = list(loaded.tokenizer(chunk, add_special_tokens=True)["input_ids"])
        if len(ids) < 2:
            continue
        one = perplexity(loaded, ids, window=len(ids), stride=len(ids))
        nll_sum += one["mean_nll"] * one["token_count"]
        scored += one["token_count"]
        token_ids.append(ids[1:])
    if not scored:
        raise ValueError("no chunk has two tokens to score")
    mean = nll_sum / scored
    return {
        "perplexity": math.exp(mean),
        "mean_nll": mean,
        "token_count": scored,
        "chunks": len(token_ids),
        "token_ids": token_ids,
        "seconds": time.perf_counter() - start,
    }
