"""Which layers lose most to quantization, what keeping them costs, and what the artifact weighs.

Sensitivity (the mixed-precision candidate of docs/quantize.md "Automatic recipe"): for every
Linear layer the scheme quantizes, the relative output error of round-to-nearest on the
calibration set, under the diagonal approximation of GPTQ's objective::

    error = sum_j h_j * sum_i (W_ij - Q(W)_ij)^2  /  sum_j h_j * sum_i W_ij^2,   h_j = mean(x_j^2)

where x are the layer's inputs on the calibration samples and Q the scheme's fake quantizer
(compressed-tensors' own qparams and ``fake_quantize``, so the grid is the one the artifact
uses). One forward pass and one quantize-dequantize per weight: seconds for a 135M model.

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
FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}  # fmt: skip
SCALE_BYTES = 2  # scales are stored in the source dtype (bf16/fp16)
# Mixed precision may add at most this share to the scheme's quantized-layer bytes.
MIXED_BYTE_BUDGET = 0.03


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
    """The fused units of the layers in ``errors``, largest error first."""
    by_name = {s.name: s for s in shapes}
    grouped: dict[str, list[str]] = {}
    for name in errors:
        grouped.setdefault(unit_of(name), []).append(name)
    found = [
        Unit(
            name=unit,
            layers=tuple(layers),
            error=sum(errors[n] for n in layers),
            scheme_bytes=sum(physical_bytes(by_name[n], scheme, group_size) for n in layers),
            kept_bytes=sum(physical_bytes(by_name[n], high, group_size) for n in layers),
        )
        for unit, layers in grouped.items()
    ]
    return sorted(found, key=lambda u: u.error, reverse=True)


def choose(ranked: list[Unit], quantized_bytes: int, budget: float = MIXED_BYTE_BUDGET) -> list[Unit]:
    """The most sensitive units, in order, while their extra bytes fit ``budget`` x ``quantized_bytes``."""
    chosen: list[Unit] = []
    spent = 0
    for unit in ranked:
        if spent + unit.extra_bytes > budget * quantized_bytes:
            break
        chosen.append(unit)
        spent += unit.extra_bytes
    return chosen


def layer_errors(model: Any, dataset: Any, scheme: str, resolution_ignore: list[str], group_size: int | None) -> dict[str, float]:
    """Relative RTN output error of every Linear the scheme quantizes (module docstring)."""
    import torch  # noqa: PLC0415

    targets = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not matches(name, "Linear", resolution_ignore)
    }
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(_module: Any, inputs: tuple[Any, ...]) -> None:
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in targets.items()]
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for ids in dataset["input_ids"]:
                model(torch.tensor([ids], device=device))
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: rtn_error(module.weight.detach().float(), sums[name] / counts[name], scheme, group_size)
        for name, module in targets.items()
        if name in sums
    }


def rtn_error(weight: Any, h: Any, scheme: str, group_size: int | None) -> float:
    """sum_j h_j ||dW_:j||^2 / sum_j h_j ||W_:j||^2 for the scheme's round-to-nearest."""
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
    delta = fake_quantize(weight, scale, zero_point, args) - weight
    h = h.to(weight.device)
    return float(((delta * delta).sum(0) * h).sum() / max(float(((weight * weight).sum(0) * h).sum()), 1e-30))


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
        "high_precision_extra_pct": round(100 * (kept_stored - kept_at_scheme) / scheme_bytes, 3) if scheme_bytes else None,
    }
