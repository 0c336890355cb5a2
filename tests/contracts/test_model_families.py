"""Model families from config.json (contracts/model_families.py): the keys real checkpoints use."""

from __future__ import annotations

import re

import pytest

from contracts.model_families import ROUTER_PATTERNS, VISION_PATTERNS, detect_family

# Trimmed from the published config.json of each model (only the keys the detection reads).
CONFIGS = {
    "Mixtral-8x7B": ({"architectures": ["MixtralForCausalLM"], "num_local_experts": 8}, "moe", 8),
    "Qwen1.5-MoE-A2.7B": ({"architectures": ["Qwen2MoeForCausalLM"], "num_experts": 60}, "moe", 60),
    "Qwen3-30B-A3B": ({"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 128}, "moe", 128),
    "DeepSeek-V3": ({"architectures": ["DeepseekV3ForCausalLM"], "n_routed_experts": 256}, "moe", 256),
    "Qwen2-VL-2B": (
        {"architectures": ["Qwen2VLForConditionalGeneration"], "vision_config": {"depth": 32}},
        "vision-language",
        None,
    ),
    "llava-1.5-7b": (
        {"architectures": ["LlavaForConditionalGeneration"], "vision_config": {}, "text_config": {}},
        "vision-language",
        None,
    ),
    "Qwen3-VL-30B-A3B": (
        {
            "architectures": ["Qwen3VLMoeForConditionalGeneration"],
            "vision_config": {"depth": 27},
            "text_config": {"num_experts": 128},
        },
        "vision-language-moe",
        128,
    ),
    "Llama-3.1-8B": ({"architectures": ["LlamaForCausalLM"], "num_attention_heads": 32}, "dense", None),
    # One expert is a dense MLP; a boolean is not a count.
    "one expert": ({"num_experts": 1}, "dense", None),
    "boolean": ({"num_local_experts": True}, "dense", None),
}


@pytest.mark.parametrize(("config", "family", "experts"), CONFIGS.values(), ids=CONFIGS.keys())
def test_family_from_config(config, family, experts):
    info = detect_family(config)
    assert (info.family, info.num_experts) == (family, experts)
    assert info.moe == (experts is not None)
    if family == "dense":
        assert info.unquantized_patterns == () and info.evidence == ()
    else:
        assert info.evidence


def matches_any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(re.match(p.removeprefix("re:"), name) for p in patterns)


@pytest.mark.parametrize(
    ("name", "left_out"),
    [
        ("model.layers.0.mlp.gate", True),  # Qwen-MoE, Mixtral in transformers 5
        ("model.layers.3.block_sparse_moe.gate", True),  # Mixtral checkpoints
        ("model.layers.0.mlp.shared_expert_gate", True),
        ("model.layers.0.feed_forward.router", True),  # Llama 4
        ("model.layers.0.mlp.router", True),  # GPT-OSS
        ("model.layers.0.mlp.gate_proj", False),  # a dense MLP's gate projection is quantized
        ("model.layers.0.mlp.experts.3.gate_proj", False),
        ("model.layers.0.mlp.shared_expert.gate_proj", False),
    ],
)
def test_router_patterns_name_routers_not_gate_projections(name, left_out):
    assert matches_any(name, ROUTER_PATTERNS) == left_out


@pytest.mark.parametrize(
    ("name", "left_out"),
    [
        ("model.visual.blocks.0.attn.qkv", True),
        ("visual.merger.mlp.0", True),
        ("model.vision_tower.encoder.layers.0.self_attn.q_proj", True),
        ("model.multi_modal_projector.linear_1", True),
        ("model.language_model.layers.0.self_attn.q_proj", False),
        ("lm_head", False),
    ],
)
def test_vision_patterns_name_the_encoder_and_projector_only(name, left_out):
    assert matches_any(name, VISION_PATTERNS) == left_out
