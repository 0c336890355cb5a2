"""Checks of a quantized artifact that the tests and the CPU benchmark share.

- ``pydoc_texts``: offline English text every Python ships (``pydoc_data.topics``), split into
  disjoint calibration and held-out parts, so perplexity is never measured on calibration text;
- ``perplexity``: exp(mean next-token NLL) over fixed, non-overlapping windows, with the model
  run in float32 on CPU (dense or compressed-tensors checkpoints; transformers decompresses
  the latter on load).

This is a quick fidelity probe, not the evaluation job (jobs/evaluate*.py owns the gate).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# Topics at the end of the sorted list are held out (about 48k tokens); calibration draws from
# the others, so the two never overlap.
HELD_OUT_TOPICS = 20


def pydoc_texts() -> tuple[list[str], str]:
    """(calibration texts, held-out text): disjoint sets of ``pydoc_data.topics`` entries."""
    from pydoc_data.topics import topics  # noqa: PLC0415  (1 MB of text, only when asked)

    keys = sorted(topics)
    calibration = [topics[k] for k in keys[:-HELD_OUT_TOPICS] if len(topics[k]) > 200]
    held_out = "\n\n".join(topics[k] for k in keys[-HELD_OUT_TOPICS:])
    return calibration, held_out


def perplexity(model_dir: Path, text: str, *, max_tokens: int = 4096, window: int = 1024) -> dict[str, Any]:
    """Perplexity of ``text`` (first ``max_tokens`` tokens) in windows of ``window`` tokens."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    # A prefix of the text is enough (English BPE is 3-5 characters a token); tokenizing 1 MB
    # would only cost time and a warning about the model's maximum length.
    ids = tokenizer(text[: max_tokens * 8], return_tensors="pt").input_ids[0, :max_tokens]
    total_nll = 0.0
    scored = 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window].unsqueeze(0)
            if chunk.shape[1] < 2:
                break
            loss = model(chunk, labels=chunk).loss.item()
            n = chunk.shape[1] - 1
            total_nll += loss * n
            scored += n
    return {"perplexity": math.exp(total_nll / scored), "tokens": scored}
