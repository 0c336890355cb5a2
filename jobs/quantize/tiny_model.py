"""A tiny, seeded, random Llama for fast tests of the quantization and serving paths.

Its shapes are chosen to exercise the group-size rule: ``hidden_size=192`` is divisible by 64
but not by 128, so a W4A16 request with the default group size 128 must be resolved to 64
(SmolLM2-135M has the same property with 576). ``head_dim`` stays 64, a size every vLLM
attention backend supports, and the default ``intermediate_size`` is a multiple of 128 so the
quantized MLP also fits the GPU kernels' tile shapes. Pass an ``intermediate_size`` that no
supported group size divides (e.g. 200) to exercise the "add the layer to ignore" branch.

The tokenizer (and chat template) is SmolLM2's, copied from the converted model
(:func:`jobs.quantize.smollm2.ensure_smollm2`), so the tiny model tokenizes real text and vLLM can load
it. The vocabulary (49152) therefore dominates the parameter count; that is fine for tests that
check the quantized Linear layers, not the overall compression ratio.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from jobs.quantize.smollm2 import ensure_smollm2

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
HEAD_DIM = 64


def build_tiny_llama(
    out_dir: Path,
    *,
    hidden_size: int = 192,
    intermediate_size: int = 512,
    num_layers: int = 2,
    num_kv_heads: int = 1,
    seed: int = 0,
    tokenizer_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Write a random Llama (bf16 safetensors) plus SmolLM2's tokenizer to ``out_dir``.

    Same arguments give byte-identical weights (seeded CPU generator), so tests that compare
    hashes or sizes are stable.
    """
    if hidden_size % HEAD_DIM:
        raise ValueError(f"hidden_size must be a multiple of the head dim {HEAD_DIM}, got {hidden_size}")
    num_heads = hidden_size // HEAD_DIM
    if num_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads {num_kv_heads} must divide the number of heads {num_heads}")
    src_tok = Path(tokenizer_dir) if tokenizer_dir is not None else ensure_smollm2(cache_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=HEAD_DIM,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        dtype="bfloat16",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # The default init (std 0.02) gives near-constant logits; a wider spread makes quantization
    # error visible in tests that compare outputs, without overflowing bf16.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for name, param in model.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    model = model.to(torch.bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (src_tok / name).is_file():
            shutil.copyfile(src_tok / name, out_dir / name)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny seeded random Llama with SmolLM2's tokenizer")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hidden-size", type=int, default=192)
    parser.add_argument("--intermediate-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_llama(
        args.out,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_layers=args.num_layers,
        seed=args.seed,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
