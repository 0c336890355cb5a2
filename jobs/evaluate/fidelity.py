"""Fidelity of a candidate against its baseline, offline (no server needed).

- Perplexity over the same validation tokens for both models: the shared implementation,
  jobs/sagemaker_job/perplexity.py (sliding window, every token after the first scored once).
- Greedy outputs on a prompt set, whose agreement (how often the candidate writes exactly what the
  baseline writes, and how far the two agree before they first diverge) is
  contracts/live_quality.py's ``agreement``, the one the live-quality sampler publishes.

Both run with transformers on CPU in float32 (bf16 matmuls are slow on CPUs without AVX-512
BF16). A compressed-tensors candidate is loaded through transformers' compressed-
tensors integration, which applies the scheme's weight (and activation) quantization in the
forward pass, so a scheme this machine cannot *serve* can still be judged for fidelity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jobs.sagemaker_job.perplexity import LoadedModel

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


def decode_outputs(loaded: LoadedModel, outputs: Sequence[Sequence[int]]) -> list[str]:
    """Greedy continuations as text (special tokens dropped), for the human review sample."""
    return [str(loaded.tokenizer.decode(list(ids), skip_special_tokens=True)) for ids in outputs]


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight files (safetensors, else PyTorch bins) in a model directory."""
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    if not files:
        raise ValueError(f"no weight files (*.safetensors, *.bin) in {model_dir}")
    return sum(f.stat().st_size for f in files)
