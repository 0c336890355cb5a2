"""The evaluate report: report.json (report_version 1), report.md, performance.png, gate.json, and
the human review sample (review.json, review.html) when one is given."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.artifact_layout import GATE_FILE, REPORT_FILE
from jobs.evaluate.cost import PriceTable, cost_section, smallest_fitting_instance
from jobs.evaluate.gate import Thresholds, Workload, evaluate_gate, gate_json, pipeline_gate
from jobs.evaluate.models import ModelInfo
from jobs.evaluate.report import plot, render_markdown
from jobs.evaluate.review import write_review

REPORT_VERSION = 1


def build_report(
    *,
    models: Mapping[str, ModelInfo],
    fidelity: dict[str, Any] | None,
    performance: dict[str, Any],
    server_memory: Mapping[str, dict[str, Any] | None],
    thresholds: Thresholds,
    workload: Workload,
    prices: PriceTable,
    measured_instance_type: str,
    measured_note: str,
    context_tokens: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    fits = {
        name: smallest_fitting_instance(
            prices,
            scheme=info.scheme,
            weight_bytes=info.weight_bytes,
            config=info.config,
            concurrency=workload.concurrency,
            context_tokens=context_tokens,
        )
        for name, info in models.items()
    }
    tput: dict[str, dict[int, float]] = {}
    if performance.get("measured"):
        for name, data in performance["variants"].items():
            tput[name] = {
                int(c): float(level["output_tokens_per_s"] or 0.0)
                for c, level in data["levels"].items()
                if level.get("output_tokens_per_s") is not None
            }
    memory: dict[str, Any] = {
        "variants": {
            name: {
                "weight_bytes": info.weight_bytes,
                "server": server_memory.get(name),
            }
            for name, info in models.items()
        },
    }
    if "baseline" in models and "candidate" in models:
        memory["weight_bytes_ratio"] = round(models["candidate"].weight_bytes / models["baseline"].weight_bytes, 4)
        params = parameter_count(models["baseline"])
        if params:
            memory["parameters"] = params
            memory["bytes_per_parameter"] = {
                name: round(info.weight_bytes / params, 4) for name, info in models.items()
            }
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": {name: {"path": str(info.path), "scheme": info.scheme} for name, info in models.items()},
        "fidelity": fidelity,
        "performance": performance,
        "memory": memory,
        "cost": cost_section(
            prices,
            measured_instance_type=measured_instance_type,
            measured_note=measured_note,
            throughput_by_variant=tput,
            fits=fits,
            workload_concurrency=workload.concurrency,
        ),
        "gate": evaluate_gate(fidelity, performance, thresholds, workload),
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpus": os.cpu_count(),
        },
    }
    if extra:
        report.update(extra)
    return report


DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def parameter_count(baseline: ModelInfo) -> int | None:
    """Parameters of the unquantized baseline: its weight bytes over its dtype's size (every
    tensor of a 16-bit checkpoint is 16-bit), so a candidate's bytes per parameter is measured
    against the same count."""
    dtype = str(baseline.config.get("dtype") or baseline.config.get("torch_dtype") or "")
    size = DTYPE_BYTES.get(dtype)
    if not size or "quantization_config" in baseline.config:
        return None
    return baseline.weight_bytes // size


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON has neither (unmeasured figures are null)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_report(report: dict[str, Any], output_dir: Path, *, review: dict[str, Any] | None = None) -> dict[str, Path]:
    """report.json, report.md, the plot, gate.json and, given a review sample (jobs/evaluate/review.py),
    review.json and review.html."""
    output_dir.mkdir(parents=True, exist_ok=True)
    png = output_dir / "performance.png"
    report["plot"] = png.name if plot(report, png) else None
    paths = {"json": output_dir / REPORT_FILE, "md": output_dir / "report.md", "gate": output_dir / GATE_FILE}
    paths["json"].write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    paths["gate"].write_bytes(gate_json(pipeline_gate(report["gate"])))
    paths["md"].write_text(render_markdown(report))
    if report["plot"]:
        paths["png"] = png
    if review is not None:
        paths.update(write_review(review, output_dir))
    return paths
