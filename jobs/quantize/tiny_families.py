"""Tiny, seeded, random models of the families the job treats specially (docs/quantize.md).

- ``build_tiny_moe``: a Qwen2-MoE (default) or Qwen3-MoE, 4 experts, 2 routed per token,
  hidden 64. Qwen2-MoE has both kinds of router: ``mlp.gate`` (its own module class in
  transformers 5) and ``mlp.shared_expert_gate`` (a plain Linear, which a Linear-targeted recipe
  would quantize and vLLM reads unquantized). Qwen3-MoE's ``mlp.gate`` is the one router vLLM
  builds *with* the quantization config, so the artifact must name it in its ignore list.
- ``build_tiny_qwen2_vl``: a Qwen2-VL (a one-block vision tower and its merger, a two-layer
  text model), with SmolLM2's tokenizer plus Qwen2-VL's four vision tokens and Qwen2-VL's image
  processor settings, so that vLLM can build its multimodal processor.

Same arguments give byte-identical weights (seeded CPU generator), like
:func:`jobs.quantize.tiny_model.build_tiny_llama`, whose weight spread they share.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from jobs.quantize.smollm2 import ensure_smollm2
from jobs.quantize.tiny_model import HEAD_DIM, TOKENIZER_FILES

SMOLLM2_VOCAB = 49152
# Qwen2-VL's vision tokens, appended to SmolLM2's vocabulary (ids 49152..49155).
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# Qwen2-VL's image processor (its preprocessor_config.json on the Hub), which vLLM reads.
QWEN2_VL_IMAGE_PROCESSOR: dict[str, Any] = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
    "do_resize": True,
    "do_rescale": True,
    "do_normalize": True,
    "do_convert_rgb": True,
    "rescale_factor": 0.00392156862745098,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}
# Per MoE family, what differs: Qwen2-MoE adds a shared expert behind a sigmoid gate.
MOE_TYPES: dict[str, dict[str, Any]] = {
    "qwen2_moe": {"shared_expert_intermediate_size": 128},
    "qwen3_moe": {},
}
COMMON_TEXT: dict[str, Any] = {
    "vocab_size": SMOLLM2_VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "head_dim": HEAD_DIM,
    "max_position_embeddings": 2048,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}


def _seeded_save(model: Any, out_dir: Path, seed: int) -> None:
    """Spread the matrices (as tiny_model does: visible quantization error) and save in bf16."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for name, param in model.named_parameters():
            if name.endswith(("weight", "gate_up_proj", "down_proj")) and param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    model.to(torch.bfloat16).save_pretrained(str(out_dir), safe_serialization=True)


def _copy_tokenizer(out_dir: Path, tokenizer_dir: Path | None, cache_dir: Path | None) -> Path:
    src = Path(tokenizer_dir) if tokenizer_dir is not None else ensure_smollm2(cache_dir)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / name)
    return src


def build_tiny_moe(
    out_dir: Path,
    *,
    model_type: str = "qwen2_moe",
    num_experts: int = 4,
    seed: int = 0,
    tokenizer_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Write a random Qwen2-MoE or Qwen3-MoE (bf16 safetensors) plus SmolLM2's tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: PLC0415

    if model_type not in MOE_TYPES:
        raise ValueError(f"model_type must be one of {', '.join(MOE_TYPES)}, got {model_type!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = AutoConfig.for_model(
        model_type,
        **COMMON_TEXT,
        moe_intermediate_size=128,
        num_experts=num_experts,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        **MOE_TYPES[model_type],
        tie_word_embeddings=True,
        dtype="bfloat16",
    )
    torch.manual_seed(seed)
    _seeded_save(AutoModelForCausalLM.from_config(config), out_dir, seed)
    _copy_tokenizer(out_dir, tokenizer_dir, cache_dir)
    return out_dir


def _vision_tokenizer(out_dir: Path) -> dict[str, int]:
    """Add Qwen2-VL's vision tokens to the copied SmolLM2 tokenizer; returns their ids."""
    from transformers import AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    tokenizer.save_pretrained(str(out_dir))
    return {token: int(tokenizer.convert_tokens_to_ids(token)) for token in VISION_TOKENS}


def build_tiny_qwen2_vl(
    out_dir: Path,
    *,
    seed: int = 0,
    tokenizer_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Write a random Qwen2-VL (bf16 safetensors), its tokenizer and image processor to ``out_dir``."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_tokenizer(out_dir, tokenizer_dir, cache_dir)
    ids = _vision_tokenizer(out_dir)
    text = {
        **COMMON_TEXT,
        # A multiple of 64 that holds the four vision tokens.
        "vocab_size": SMOLLM2_VOCAB + 64,
        "rope_parameters": {"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 1000000.0},
    }
    vision = {"depth": 1, "embed_dim": 64, "hidden_size": 64, "num_heads": 1, "mlp_ratio": 2, "in_chans": 3}
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        dtype="bfloat16",
    )
    torch.manual_seed(seed)
    _seeded_save(Qwen2VLForConditionalGeneration(config), out_dir, seed)
    (out_dir / "preprocessor_config.json").write_text(json.dumps(QWEN2_VL_IMAGE_PROCESSOR, indent=2) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.quantize.tiny_families --family qwen2_moe --out DIR`` (the serving tests
    build the models in the quantize environment, whose transformers writes them)."""
    parser = argparse.ArgumentParser(description="Write a tiny seeded MoE or vision-language model")
    parser.add_argument("--family", choices=[*MOE_TYPES, "qwen2_vl"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.family == "qwen2_vl":
        print(build_tiny_qwen2_vl(args.out, seed=args.seed))
    else:
        print(build_tiny_moe(args.out, model_type=args.family, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
