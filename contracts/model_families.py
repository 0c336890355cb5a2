"""Model families the quantize job treats specially, recognised from config.json alone.

Mixture-of-experts (MoE) models route each token through a few of many expert MLPs; the
router (a small Linear that scores the experts) decides which, and quantizing it moves tokens
to other experts, so it stays in 16 bits, as vLLM expects (its MoE models read the router
unquantized unless the checkpoint's ignore list says otherwise, and some build it with the
quantization config: the artifact must name it). Vision-language models (VLMs) carry an
image encoder (the vision tower) and a projector into the text model's embedding space;
calibration reads text only, so neither would see representative activations, and vLLM's
encoders are the first place a quantized checkpoint fails to load: both stay unquantized.

Standard library only: the quantize job, its docs and any unit that reads a model's
config.json share these facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

DENSE: Final = "dense"
MOE: Final = "moe"
VISION_LANGUAGE: Final = "vision-language"
VISION_LANGUAGE_MOE: Final = "vision-language-moe"
FAMILIES: Final = (DENSE, MOE, VISION_LANGUAGE, VISION_LANGUAGE_MOE)
# (has a vision configuration, has experts) -> family
_FAMILY_OF: Final = {
    (False, False): DENSE,
    (False, True): MOE,
    (True, False): VISION_LANGUAGE,
    (True, True): VISION_LANGUAGE_MOE,
}

# config.json keys that hold the number of routed experts (Mixtral, PhiMoE: num_local_experts;
# Qwen2/3-MoE, OLMoE: num_experts; DeepSeek V2/V3: n_routed_experts; Ernie 4.5: moe_num_experts).
EXPERT_COUNT_KEYS: Final = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
# config.json keys whose presence means an image encoder (Qwen2-VL, LLaVA, Gemma 3, Mllama...).
VISION_KEYS: Final = ("vision_config", "vision_tower", "mm_vision_tower", "visual")
# Where a multimodal config keeps its language model's settings.
TEXT_CONFIG_KEYS: Final = ("text_config", "llm_config", "language_config")

# Module-name patterns (compressed-tensors' "re:" syntax, matched from the start of the name)
# of what each trait leaves unquantized. The job resolves them to the names of the real module
# tree and writes those names, not the patterns, into the recipe, the manifest and the artifact.
ROUTER_PATTERNS: Final = (
    r"re:.*\.mlp\.gate$",  # Qwen2/3-MoE, and Mixtral as transformers 5 names it
    r"re:.*\.block_sparse_moe\.gate$",  # Mixtral, PhiMoE (checkpoint names)
    r"re:.*\.shared_expert_gate$",  # Qwen2-MoE: the shared expert's sigmoid gate
    r"re:.*\.(mlp|feed_forward)\.router$",  # GPT-OSS, Llama 4
)
VISION_PATTERNS: Final = (
    r"re:(model\.)?visual\..*",  # Qwen2-VL, Qwen2.5-VL (tower and its merger, the projector)
    r"re:(model\.)?vision_tower\..*",  # LLaVA, Gemma 3, Mistral 3
    r"re:(model\.)?vision_model\..*",  # Mllama, Idefics
    r"re:(model\.)?multi_modal_projector\..*",  # LLaVA, Gemma 3, Mistral 3
)


@dataclass(frozen=True)
class FamilyInfo:
    """What config.json says about a model's family, and the evidence."""

    family: str
    architectures: tuple[str, ...]
    model_type: str | None
    num_experts: int | None
    evidence: tuple[str, ...]

    @property
    def moe(self) -> bool:
        return self.num_experts is not None

    @property
    def vision(self) -> bool:
        return self.family in (VISION_LANGUAGE, VISION_LANGUAGE_MOE)

    @property
    def unquantized_patterns(self) -> tuple[str, ...]:
        """The patterns of the modules this family leaves unquantized (besides lm_head)."""
        return (ROUTER_PATTERNS if self.moe else ()) + (VISION_PATTERNS if self.vision else ())


def _expert_count(section: Mapping[str, Any], where: str) -> tuple[int | None, str | None]:
    for key in EXPERT_COUNT_KEYS:
        value = section.get(key)
        # bool is an int; a count of one expert is a dense MLP.
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value, f"{where}{key}={value}"
    return None, None


def detect_family(config: Mapping[str, Any]) -> FamilyInfo:
    """The family of the model whose config.json is ``config``."""
    evidence: list[str] = []
    vision = [key for key in VISION_KEYS if config.get(key) is not None]
    evidence += [f"{key} present" for key in vision]
    num_experts, why = _expert_count(config, "")
    if num_experts is None:
        for key in TEXT_CONFIG_KEYS:
            section = config.get(key)
            if isinstance(section, Mapping):
                num_experts, why = _expert_count(section, f"{key}.")
                if num_experts is not None:
                    break
    if why:
        evidence.append(why)
    family = _FAMILY_OF[(bool(vision), num_experts is not None)]
    architectures = config.get("architectures") or ()
    model_type = config.get("model_type")
    return FamilyInfo(
        family=family,
        architectures=tuple(str(a) for a in architectures),
        model_type=str(model_type) if model_type is not None else None,
        num_experts=num_experts,
        evidence=tuple(evidence),
    )
