"""MoE and vision-language models in the quantize job (docs/quantize.md "Model families").

The family comes from config.json (contracts/model_families.py). What it changes:

- Loading: a VLM is loaded with ``AutoModelForImageTextToText`` (transformers 5 has no causal-LM
  class for Qwen2-VL and its kin), whose module tree holds the vision tower and projector too.
  transformers 5 keeps the experts of an MoE layer as one fused 3-D parameter, which no
  Linear-targeted scheme quantizes; llm-compressor's ``linearize_moe`` turns them into one
  Linear per expert (``LinearExperts2D``), saved under the checkpoint's per-expert names
  (``mlp.experts.<i>.gate_proj``...), the ones vLLM reads.
- Calibration: every expert must see tokens, or GPTQ has no Hessian and AWQ no activation
  statistics for the experts the router did not pick. llm-compressor 0.14's
  ``moe_calibrate_all_experts`` (oneshot's argument, default True) sends every token through
  every expert while calibrating and keeps the routed output; the job passes it explicitly.
  VLMs are calibrated with text only: the tokenizer, not the processor, and no pixel values,
  so the vision tower never runs, which is one more reason it is left unquantized.
- What stays unquantized: the modules of the real module tree that match the family's patterns
  (routers; vision tower and projector), resolved here by name and added to the ignore list,
  so the recipe, the manifest and the saved quantization_config name the same modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.model_families import FamilyInfo, detect_family
from jobs.quantize import distributed
from jobs.quantize.support import LinearShape, matches
from jobs.sagemaker_job.failure import JobFailureError


@dataclass(frozen=True)
class FamilyPlan:
    """A model's family and the modules it leaves unquantized (names in the loaded module tree)."""

    info: FamilyInfo
    left_unquantized: tuple[str, ...]

    def manifest_record(self) -> dict[str, Any]:
        return {
            "family": self.info.family,
            "architectures": list(self.info.architectures),
            "model_type": self.info.model_type,
            "num_experts": self.info.num_experts,
            "evidence": list(self.info.evidence),
            "patterns": list(self.info.unquantized_patterns),
        }


def plan_family(model_dir: Path) -> tuple[FamilyPlan, list[LinearShape]]:
    """The preflight's part: the family, what it leaves unquantized, and the Linear shapes the
    group-size rule reads, all from a weightless instance of the module tree the job quantizes."""
    info = read_family(model_dir)
    model = meta_model(model_dir, info)
    return FamilyPlan(info, tuple(left_unquantized(model, info))), linear_shapes(model)


def read_family(model_dir: Path) -> FamilyInfo:
    """The family of the model in ``model_dir`` (its config.json; checked to exist by preflight)."""
    return detect_family(json.loads((Path(model_dir) / "config.json").read_text()))


def auto_class(info: FamilyInfo) -> Any:
    """The transformers class that loads the whole model, encoders included."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText  # noqa: PLC0415

    return AutoModelForImageTextToText if info.vision else AutoModelForCausalLM


def load_model(model_dir: Path, dtype: Any, info: FamilyInfo | None) -> Any:
    """The source model in CPU memory (``distributed.load_model``), experts linearized for MoE.

    Not ``load_quantizable_moe``: inside it transformers 5.17's ``apply_patches`` lists every
    lazily imported transformers module, which imports image processors that need torchvision,
    and the quantize image ships none (ModuleNotFoundError). Linearizing after the load is
    what oneshot falls back to itself; it costs one copy of the expert weights.
    """
    from llmcompressor.modeling.moe.linearize import linearize_moe  # noqa: PLC0415

    model = distributed.load_model(model_dir, dtype, auto_class(info) if info else None)
    if info is not None and info.moe:
        linearize_moe(model)
    return model


def meta_model(model_dir: Path, info: FamilyInfo) -> Any:
    """A weightless (meta-device) instance with the module tree the job quantizes: costs no memory."""
    import torch  # noqa: PLC0415
    from transformers import AutoConfig  # noqa: PLC0415

    try:
        config = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = auto_class(info).from_config(config)
            if info.moe:
                _linearize_weightless(model)
    except (ValueError, KeyError, OSError) as exc:
        raise JobFailureError(f"cannot build the model from {model_dir}/config.json: {exc}") from None
    return model


def _linearize_weightless(model: Any) -> None:
    """Replace each fused experts module by the per-expert Linears llm-compressor will load.

    ``linearize_moe`` copies the weights and offloads them, which a meta-device model cannot
    do; this builds the same classes (``LinearExperts2D``) without copying anything.
    """
    from llmcompressor.modeling.moe.linear_experts import LinearExperts2D  # noqa: PLC0415
    from llmcompressor.modeling.moe.linearize import get_non_linearized_moes  # noqa: PLC0415
    from llmcompressor.utils.dev import skip_weights_initialize  # noqa: PLC0415

    for name, module in get_non_linearized_moes(model):
        linear_cls = LinearExperts2D.get_linear_experts_cls(type(module))
        with skip_weights_initialize():
            model.set_submodule(name, linear_cls(getattr(module, "config", model.config)))


def linear_shapes(model: Any) -> list[LinearShape]:
    import torch  # noqa: PLC0415

    return [
        LinearShape(name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]


def left_unquantized(model: Any, info: FamilyInfo) -> list[str]:
    """The modules with a weight matrix that the family keeps in 16 bits, by their names in
    ``model``'s tree (routers are Linear in some models and their own class in others: both)."""
    import torch  # noqa: PLC0415

    patterns = info.unquantized_patterns
    return [
        name
        for name, module in model.named_modules()
        if isinstance(weight := getattr(module, "weight", None), torch.Tensor)
        and weight.dim() == 2
        and matches(name, type(module).__name__, patterns)
    ]


def check_saved(model: Any, saved_dir: Path, plan: FamilyPlan | None) -> None:
    """Fail unless the saved quantization_config ignores every module the family left out.

    The saved ignore list uses checkpoint names (compressed-tensors maps transformers 5's module
    names back, e.g. ``model.visual.*`` to ``visual.*``); a module missing from it would be read
    as quantized by vLLM, and the artifact would not load there.
    """
    if plan is None or not plan.left_unquantized:
        return
    from compressed_tensors.quantization.quant_config import _map_to_checkpoint_names  # noqa: PLC0415

    saved = json.loads((Path(saved_dir) / "config.json").read_text())
    ignore = saved.get("quantization_config", {}).get("ignore") or []
    expected = _map_to_checkpoint_names(model, list(plan.left_unquantized))
    missing = [name for name in expected if not matches(name, "", ignore)]
    if missing:
        raise JobFailureError(
            f"internal error: the saved quantization_config does not ignore {', '.join(missing)}, "
            "which were left unquantized; vLLM would read them as quantized"
        )
