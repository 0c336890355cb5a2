"""What the evaluate job reads from a model directory: config.json, scheme, weight bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.evaluate.fidelity import weight_bytes
from jobs.sagemaker_job.failure import JobFailureError


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JobFailureError(f"{model_dir} is not a model directory (config.json: {exc})") from None
    if not isinstance(data, dict):
        raise JobFailureError(f"{path} must hold a JSON object")
    return data


def detect_scheme(config: Mapping[str, Any]) -> str:
    """The quantization scheme named the way the quantize job names it, from config.json.

    Read from the model itself (compressed-tensors ``quantization_config``), not from a
    manifest, because the pipeline hands the job only the artifact directory.
    """
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
        return {"bfloat16": "BF16", "float16": "FP16", "float32": "FP32"}.get(dtype, dtype.upper())
    groups = qc.get("config_groups") or {}
    if not groups:
        return str(qc.get("quant_method", "quantized")).upper()
    group = next(iter(groups.values()))
    weights = group.get("weights") or {}
    acts = group.get("input_activations")
    bits = int(weights.get("num_bits", 0))
    if weights.get("type") == "float" and bits == 8:
        return "FP8_DYNAMIC" if acts else "FP8"
    if acts:
        return f"W{bits}A{int(acts.get('num_bits', 16))}"
    suffix = "" if weights.get("symmetric", True) else "_ASYM"
    return f"W{bits}A16{suffix}"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    scheme: str
    weight_bytes: int
    config: dict[str, Any]

    @classmethod
    def read(cls, path: Path, scheme: str | None = None) -> ModelInfo:
        if not path.is_dir():
            raise JobFailureError(f"model directory {path} does not exist")
        config = read_config(path)
        try:
            size = weight_bytes(path)
        except ValueError as exc:
            raise JobFailureError(str(exc)) from None
        return cls(path, scheme or detect_scheme(config), size, config)
