"""Fidelity of a candidate against its baseline, offline (no server needed).

- Perplexity over the same validation tokens for both models, with a sliding window so every
  scored token sees up to ``window - stride`` tokens of context even across window borders.
- Greedy-output agreement on a prompt set: how often the candidate writes exactly what the
  baseline writes, and how far the two agree before they first diverge.

Both run with transformers on CPU in float32 (bf16 matmuls are slow on CPUs without AVX-512
BF16; toolchain.md). A compressed-tensors candidate is loaded through transformers' compressed-
tensors integration, which applies the scheme's weight (and activation) quantization in the
forward pass, so a scheme this machine cannot *serve* can still be judged for fidelity.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_WINDOW = 512
DEFAULT_STRIDE = 256

# Short, varied instructions; greedy decoding makes the outputs deterministic per model.
DEFAULT_PROMPTS = (
    "Explain in two sentences what a Python list comprehension is.",
    "Write a haiku about the sea.",
    "What is the capital of France? Answer in one word.",
    "Give three tips for writing clear documentation.",
    "Summarize what a hash table does.",
    "Translate 'good morning' into Spanish.",
    "List the first five prime numbers.",
    "Why is the sky blue? Answer briefly.",
)


def read_validation_texts(path: Path) -> list[str]:
    """Texts from a file or a directory of ``.jsonl``/``.txt`` files (sorted, so order is stable).

    JSONL lines may hold ``text``, ``messages`` (contents joined) or ``prompt``/``completion``:
    the same shapes the quantize job accepts for calibration.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if p.suffix in {".jsonl", ".json", ".txt"}]
    if not files:
        raise ValueError(f"no .jsonl or .txt validation files in {path}")
    texts: list[str] = []
    for file in files:
        if file.suffix == ".txt":
            texts.append(file.read_text(encoding="utf-8"))
            continue
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{file}:{number}: not JSON ({exc.msg})") from exc
            texts.append(_record_text(record, f"{file}:{number}"))
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"the validation data in {path} holds no text")
    return texts


def _record_text(record: Any, where: str) -> str:
    if isinstance(record, dict):
        if isinstance(record.get("text"), str):
            return str(record["text"])
        if isinstance(record.get("messages"), list):
            return "\n".join(str(m.get("content", "")) for m in record["messages"] if isinstance(m, dict))
        if isinstance(record.get("prompt"), str):
            return f"{record['prompt']}{record.get('completion', '')}"
    raise ValueError(f"{where}: expected an object with 'text', 'messages' or 'prompt'")


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

    Every position 1..n-1 is scored exactly once; a window scores only the tokens the previous
    one did not, using the rest as context (the standard HF recipe for fixed-length models).
    """
    if window < 2 or not 0 < stride <= window:
        raise ValueError(f"need window >= 2 and 0 < stride <= window, got window={window} stride={stride}")
    spans = []
    prev_end = 1  # position 0 has no context and is never scored
    begin = 0
    while prev_end < n_tokens:
        end = min(begin + window, n_tokens)
        spans.append((begin, end, prev_end))
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
) -> dict[str, Any]:
    """exp(mean NLL) over every token after the first; ``token_count`` = tokens scored."""
    import torch  # noqa: PLC0415

    ids = torch.tensor(list(token_ids), dtype=torch.long)
    spans = sliding_windows(len(ids), window, stride)
    nll_sum = 0.0
    scored = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for index, (begin, end, first) in enumerate(spans):
            chunk = ids[begin:end].unsqueeze(0)
            logits = loaded.model(chunk).logits[0].float()
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


def greedy_outputs(loaded: LoadedModel, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuations (token ids) of each chat prompt."""
    import torch  # noqa: PLC0415

    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            if getattr(loaded.tokenizer, "chat_template", None):
                text = loaded.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
                )
            else:
                text = prompt
            enc = loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False)
            out = loaded.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=loaded.tokenizer.pad_token_id or loaded.tokenizer.eos_token_id,
            )
            outputs.append([int(t) for t in out[0, enc["input_ids"].shape[1] :]])
    return outputs


def agreement(baseline: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Exact-match rate and mean agreeing-prefix share of greedy outputs (1.0 = identical)."""
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


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight files (safetensors, else PyTorch bins) in a model directory."""
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    if not files:
        raise ValueError(f"no weight files (*.safetensors, *.bin) in {model_dir}")
    return sum(f.stat().st_size for f in files)
