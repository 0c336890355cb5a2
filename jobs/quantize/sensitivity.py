"""Which layers lose most to quantization, what keeping them costs, and what the artifact weighs.

Sensitivity (the mixed-precision candidate of docs/quantize.md "Automatic recipe"): for every
*unit* of Linear layers the scheme quantizes, the expected increase of the model's loss on
calibration tokens when its weights are rounded to the scheme, to second order with the
diagonal empirical Fisher information (squared loss gradients, as HAWQ and SqueezeLLM use):
``1/2 sum_i F_ii (Q(W)_i - W_i)^2``. Q is round-to-nearest with compressed-tensors' own qparams
and ``fake_quantize``, so the grid is the one the artifact uses; weights only (activations stay
in full precision). Cost: one forward and backward pass per ``SENSITIVITY_CHUNK`` of
``SENSITIVITY_TOKENS`` calibration tokens, and the squared gradients of the quantized layers in
float32 (twice their float32 size in memory while it runs). Two cheaper or costlier measures
were tried on SmolLM2-135M W4A16_ASYM: the relative output error of each layer (weight error
weighted by its inputs' mean squares) picked attention projections whose 8-bit versions made
the model worse (held-out perplexity 13.671 against GPTQ's 13.598); measuring the loss with each
unit rounded alone (one forward pass per unit, 120 units) took over 10 minutes on the loaded 2
shared cores.

Layers that vLLM fuses into one kernel (q/k/v, gate/up) must share a scheme, so they are kept
together: a *unit* is such a group, its error the sum of its layers'.

Bytes: ``physical_bytes`` is what a layer weighs at a scheme (weights at their bit width plus
one 16-bit scale, and for asymmetric schemes one zero point, per group or channel);
``artifact_layer_bytes`` reads what the saved safetensors actually hold per layer (headers
only).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.support_table import SCHEME_INFO
from jobs.quantize.support import LinearShape, matches

# Fused in vLLM (packed_modules_mapping of Llama-like models): one scheme per fused group.
FUSED = {
    "q_proj": "qkv_proj",
    "k_proj": "qkv_proj",
    "v_proj": "qkv_proj",
    "gate_proj": "gate_up_proj",
    "up_proj": "gate_up_proj",
}
SCALE_BYTES = 2  # scales are stored in the source dtype (bf16/fp16)
# Mixed precision may add at most this share to the scheme's quantized-layer bytes: the whole
# (quantized plus kept layers) then stays within 5 % of the scheme's physical size.
MIXED_BYTE_BUDGET = 0.04
SENSITIVITY_TOKENS = 512
SENSITIVITY_CHUNK = 128


def unit_of(name: str) -> str:
    parent, _, leaf = name.rpartition(".")
    fused = FUSED.get(leaf)
    return f"{parent}.{fused}" if fused else name


def physical_bytes(shape: LinearShape, scheme: str | None, group_size: int | None) -> int:
    """Bytes of one Linear at ``scheme`` (None: unquantized, 16-bit)."""
    params = shape.in_features * shape.out_features
    if scheme is None:
        return params * 2
    info = SCHEME_INFO[scheme]
    groups = shape.out_features * (math.ceil(shape.in_features / group_size) if info.grouped and group_size else 1)
    # compressed-tensors packs asymmetric zero points at the weights' bit width too.
    zero_points = 0 if "ASYM" not in scheme else math.ceil(groups * info.weight_bits / 8)
    return math.ceil(params * info.weight_bits / 8) + groups * SCALE_BYTES + zero_points


@dataclass(frozen=True)
class Unit:
    name: str
    layers: tuple[str, ...]
    error: float
    scheme_bytes: int  # at the requested scheme
    kept_bytes: int  # at the higher precision it would be kept at

    @property
    def extra_bytes(self) -> int:
        return self.kept_bytes - self.scheme_bytes


def units(
    errors: Mapping[str, float],
    shapes: Iterable[LinearShape],
    scheme: str,
    high: str | None,
    group_size: int | None,
) -> list[Unit]:
    """The units of ``errors`` (unit name -> loss increase, ``unit_errors``), largest error first."""
    grouped: dict[str, list[LinearShape]] = {}
    for shape in shapes:
        grouped.setdefault(unit_of(shape.name), []).append(shape)
    found = [
        Unit(
            name=unit,
            layers=tuple(s.name for s in grouped[unit]),
            error=error,
            scheme_bytes=sum(physical_bytes(s, scheme, group_size) for s in grouped[unit]),
            kept_bytes=sum(physical_bytes(s, high, group_size) for s in grouped[unit]),
        )
        for unit, error in errors.items()
    ]
    return sorted(found, key=lambda u: u.error, reverse=True)


def choose(ranked: list[Unit], quantized_bytes: int, budget: float | None = None) -> list[Unit]:
    """The most sensitive units, in order, while their extra bytes fit ``budget`` (default
    ``MIXED_BYTE_BUDGET``) x ``quantized_bytes``."""
    budget = MIXED_BYTE_BUDGET if budget is None else budget
    chosen: list[Unit] = []
    spent = 0
    for unit in ranked:
        if spent + unit.extra_bytes > budget * quantized_bytes:
            break
        chosen.append(unit)
        spent += unit.extra_bytes
    return chosen


def unit_errors(
    model: Any, token_ids: list[int], scheme: str, ignore: list[str], group_size: int | None
) -> dict[str, float]:
    """Each unit's expected loss increase when its weights are rounded to the scheme:
    ``1/2 sum F * (Q(W) - W)^2`` with F the diagonal empirical Fisher information (squared
    gradients of the loss, per chunk of ``SENSITIVITY_CHUNK`` calibration tokens)."""
    import torch  # noqa: PLC0415

    targets: dict[str, Any] = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not matches(name, "Linear", ignore)
    }
    frozen = [p for p in model.parameters() if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    weights = [module.weight for module in targets.values()]
    fisher = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
    device = next(model.parameters()).device
    try:
        for weight in weights:
            weight.requires_grad_(True)
        for start in range(0, max(2, len(token_ids)) - 1, SENSITIVITY_CHUNK):
            ids = torch.tensor([token_ids[start : start + SENSITIVITY_CHUNK]], device=device)
            if ids.shape[1] < 2:
                break
            loss = model(ids, labels=ids).loss
            for total, grad in zip(fisher, torch.autograd.grad(loss, weights), strict=True):
                total.add_(grad.float() ** 2)
    finally:
        for weight in weights:
            weight.requires_grad_(False)
        for param in frozen:
            param.requires_grad_(True)
    errors: dict[str, float] = {}
    with torch.no_grad():
        for (name, module), info in zip(targets.items(), fisher, strict=True):
            weight = module.weight.detach().float()
            delta = rtn(weight, scheme, group_size) - weight
            errors[unit_of(name)] = errors.get(unit_of(name), 0.0) + 0.5 * float((info * delta * delta).sum())
    return errors


def rtn(weight: Any, scheme: str, group_size: int | None) -> Any:
    """``weight`` rounded to the scheme's grid and back (compressed-tensors' qparams and fake quantizer)."""
    from compressed_tensors.quantization import preset_name_to_scheme  # noqa: PLC0415
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize  # noqa: PLC0415
    from compressed_tensors.quantization.utils import calculate_qparams  # noqa: PLC0415

    args = preset_name_to_scheme(scheme, ["Linear"]).weights
    if args.group_size is not None and group_size is not None:
        args.group_size = group_size
    rows = weight.shape[0]
    if args.group_size:
        view = weight.reshape(rows, -1, args.group_size)
        low, high = view.amin(-1), view.amax(-1)
    else:
        low, high = weight.amin(1, keepdim=True), weight.amax(1, keepdim=True)
    scale, zero_point = calculate_qparams(low, high, args)
    return fake_quantize(weight, scale, zero_point, args)


def _tensor_headers(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, Any] = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def artifact_layer_bytes(artifact: Path) -> dict[str, int]:
    """Bytes per module (``model.layers.0.mlp.down_proj``: its weight, packed weight, scales,
    zero points, shape, g_idx) in the saved safetensors, from their headers."""
    per_module: dict[str, int] = {}
    for path in sorted(artifact.glob("*.safetensors")):
        for tensor, meta in _tensor_headers(path).items():
            module = re.sub(r"\.[^.]+$", "", tensor)
            begin, end = meta["data_offsets"]
            per_module[module] = per_module.get(module, 0) + int(end) - int(begin)
    return per_module


def byte_report(
    artifact: Path,
    shapes: Iterable[LinearShape],
    *,
    scheme: str,
    group_size: int | None,
    ignore: list[str],
    high_precision: tuple[str, ...],
) -> dict[str, Any]:
    """The quantized layers' bytes in the artifact against the scheme's physical size, and what
    the layers kept at higher precision cost over quantizing them too."""
    measured = artifact_layer_bytes(artifact)
    shapes = list(shapes)
    kept = [s for s in shapes if s.name in high_precision]
    quantized = [s for s in shapes if s.name not in high_precision and not matches(s.name, "Linear", ignore)]
    scheme_bytes = sum(physical_bytes(s, scheme, group_size) for s in quantized)
    stored = sum(measured.get(s.name, 0) for s in quantized)
    kept_stored = sum(measured.get(s.name, 0) for s in kept)
    kept_at_scheme = sum(physical_bytes(s, scheme, group_size) for s in kept)
    return {
        "quantized_layers": len(quantized),
        "quantized_layer_bytes": stored,
        "scheme_physical_bytes": scheme_bytes,
        "bf16_bytes": sum(physical_bytes(s, None, None) for s in quantized),
        "ratio_to_physical": round(stored / scheme_bytes, 4) if scheme_bytes else None,
        "high_precision_layers": len(kept),
        "high_precision_bytes": kept_stored,
        "high_precision_extra_bytes": kept_stored - kept_at_scheme,
        "high_precision_extra_pct": round(100 * (kept_stored - kept_at_scheme) / scheme_bytes, 3)
        if scheme_bytes
        else None,
    }
