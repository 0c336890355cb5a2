"""What the evaluate job reads from a model directory: config.json, scheme, weight bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.artifact_layout import MANIFEST_FILE
from jobs.evaluate.fidelity import weight_bytes as weight_bytes_of
from jobs.sagemaker_job.failure import JobFailureError


def config_path(model_dir: Path) -> Path:
    """config.json at the top of ``model_dir``, else the one file of that name below it.

    The pipeline hands the evaluate job the config alone (an S3 input whose URI is the key of
    config.json), and where SageMaker puts a single object under the input's local path is
    not the job's to decide.
    """
    top = model_dir / "config.json"
    if top.is_file():
        return top
    found = sorted(model_dir.rglob("config.json"))
    if len(found) == 1:
        return found[0]
    raise JobFailureError(
        f"{model_dir} is not a model directory: "
        + ("no config.json in it" if not found else f"{len(found)} config.json files in it")
    )


def read_config(model_dir: Path) -> dict[str, Any]:
    path = config_path(model_dir)
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
    def read(cls, path: Path, scheme: str | None = None, weight_bytes: int | None = None) -> ModelInfo:
        """``weight_bytes`` counts where the directory holds the config alone (the pipeline's
        evaluate job, which reads the size from the quantize manifest)."""
        if not path.is_dir():
            raise JobFailureError(f"model directory {path} does not exist")
        config = read_config(path)
        try:
            size = weight_bytes_of(path)
        except ValueError as exc:
            if weight_bytes is None:
                raise JobFailureError(str(exc)) from None
            size = weight_bytes
        return cls(path, scheme or detect_scheme(config), size, config)


def manifest_sizes(manifest_dir: Path) -> dict[str, int]:
    """The source model's and the artifact's bytes from the quantize manifest in ``manifest_dir``."""
    found = sorted(manifest_dir.rglob(MANIFEST_FILE)) if manifest_dir.is_dir() else []
    if len(found) != 1:
        raise JobFailureError(f"expected one {MANIFEST_FILE} under {manifest_dir}, found {len(found)}")
    try:
        metrics = json.loads(found[0].read_text())["metrics"]
        return {"baseline": int(metrics["source_bytes"]), "candidate": int(metrics["artifact_bytes"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JobFailureError(f"{found[0]} has no metrics.source_bytes / metrics.artifact_bytes: {exc}") from None
