"""The quantize job's manifest.json (docs/quantize.md "Output"), and its one-screen summary.

The fields the pipeline relies on are contracts/manifest.py's; the job checks them before it
publishes the artifact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts import manifest as manifest_contract
from contracts.support_table import SCHEME_INFO
from jobs.quantize import distributed
from jobs.quantize.artifact import directory_bytes, hardware, peak_cpu_rss_bytes, versions
from jobs.quantize.families import FamilyPlan
from jobs.quantize.preflight import CalibrationPlan, Paths
from jobs.quantize.support import GroupResolution, Hyperparameters, LinearShape
from jobs.sagemaker_job.failure import JobFailureError


@dataclass
class Prepared:
    """What the preflight found: everything quantize_into needs besides the paths."""

    source_dtype: str
    tokenizer: Any
    plan: CalibrationPlan
    resolution: GroupResolution
    layers: list[LinearShape] = field(default_factory=list)
    fitness: dict[str, Any] | None = None  # jobs/quantize/fitness.py; None when nothing calibrates
    family: FamilyPlan | None = None


def build_manifest(
    *,
    hp: Hyperparameters,
    paths: Paths,
    staging: Path,
    prepared: Prepared,
    stats: Mapping[str, Any],
    source_sha256: str,
    wall_seconds: float,
) -> dict[str, Any]:
    plan, resolution, source_dtype = prepared.plan, prepared.resolution, prepared.source_dtype
    saved_config = json.loads((staging / "config.json").read_text())
    manifest: dict[str, Any] = {
        "schema_version": manifest_contract.SCHEMA_VERSION,
        "job": "quantize",
        "model_family": prepared.family.manifest_record() if prepared.family else None,
        "quantization": {
            "algorithm": hp.algorithm,
            "scheme": hp.scheme,
            "scheme_description": SCHEME_INFO[hp.scheme].description,
            "group_size": resolution.effective,
            "group_size_requested": hp.group_size if hp.grouped else None,
            "ignore": resolution.ignore,
            # The modules the model's family keeps in 16 bits (names in the loaded module tree).
            "left_unquantized": list(prepared.family.left_unquantized) if prepared.family else [],
            "changes": resolution.changes,
            "quantized_layers": resolution.quantized_layers,
            "format": saved_config.get("quantization_config", {}).get("format"),
            "seed": hp.seed,
            "recipe": hp.recipe,
            "high_precision_layers": list(stats.get("high_precision", ())),
            # The quantized layers' bytes in the artifact against the scheme's physical size.
            "layer_bytes": stats.get("layer_bytes"),
        },
        "calibration": {
            "sha256": plan.sha256,
            "files": plan.files,
            "records_available": plan.records_available,
            "samples_requested": hp.num_calibration_samples if hp.needs_calibration else 0,
            "samples_used": len(plan.texts),
            "shapes": plan.shapes,
            "max_seq_length": hp.max_seq_length,
            "tokens": stats["calibration_tokens"],
            "dtype": stats["calibration_dtype"] if plan.texts else None,
            "warnings": plan.warnings,
            # The input-drift reference (contracts/manifest.py CALIBRATION_PROFILE_FIELD).
            "profile": plan.profile,
            "note": None if hp.needs_calibration else f"{hp.algorithm} is data-free; no calibration read",
            "fitness": prepared.fitness,
        },
        "source": {"sha256": source_sha256, "dtype": source_dtype, "path": str(paths.model)},
        "artifact": {"dtype": source_dtype, "files": sorted(p.name for p in staging.iterdir())},
        "hyperparameters": asdict(hp),
        "versions": versions(),
        "hardware": hardware(),
        "distributed": stats["distributed"],
        "metrics": {
            "wall_seconds": round(wall_seconds, 3),
            "load_seconds": stats["load_seconds"],
            "calibrate_seconds": stats["calibrate_seconds"],
            "save_seconds": stats["save_seconds"],
            "source_bytes": directory_bytes(paths.model),
            "artifact_bytes": directory_bytes(staging),
            "peak_cpu_rss_bytes": peak_cpu_rss_bytes(),
            "peak_gpu_memory_bytes": stats["peak_gpu_memory_bytes"],
        },
    }
    if "search" in stats:
        manifest["search"] = stats["search"]  # jobs/quantize/search.py: every candidate, the winner, why
    manifest["metrics"]["compression_ratio"] = round(
        manifest["metrics"]["source_bytes"] / max(1, manifest["metrics"]["artifact_bytes"]), 3
    )
    missing = manifest_contract.missing_fields(manifest)
    if missing:  # the record step would refuse the artifact: fail here, with the reason
        raise JobFailureError(f"internal error: the manifest lacks {', '.join(missing)}")
    return manifest


def distribution(rank: distributed.Rank | None, backend: str | None, stats: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``distributed`` record: how many ranks, and what each used at its peak.

    Collective with several ranks (every rank sends its own peaks to every other)."""
    mine = {
        "rank": rank.rank if rank else 0,
        "calibration_samples": stats["rank_samples"],
        "peak_cpu_rss_bytes": peak_cpu_rss_bytes(),
        "peak_gpu_memory_bytes": stats["peak_gpu_memory_bytes"],
    }
    return {
        "world_size": rank.world_size if rank else 1,
        "backend": backend,
        "ranks": distributed.gather(mine, rank) if rank else [mine],
    }


def summary(manifest: Mapping[str, Any]) -> str:
    q, m, c = manifest["quantization"], manifest["metrics"], manifest["calibration"]
    gib = 1024**3
    lines = [
        f"quantized: {q['algorithm']} {q['scheme']} group_size={q['group_size']} layers={q['quantized_layers']}",
        f"ignored:   {', '.join(q['ignore'])}",
        f"calibration: {c['samples_used']} samples, {c['tokens']} tokens",
        f"size: {m['source_bytes'] / gib:.3f} GiB -> {m['artifact_bytes'] / gib:.3f} GiB ({m['compression_ratio']}x)",
        f"time: {m['wall_seconds']:.1f} s (calibration {m['calibrate_seconds']:.1f} s); "
        f"peak RSS {m['peak_cpu_rss_bytes'] / gib:.2f} GiB",
    ]
    family = manifest.get("model_family") or {}
    if family.get("family", "dense") != "dense":
        lines.insert(2, f"family:    {family['family']}; left unquantized: {len(q['left_unquantized'])} module(s)")
    if m["peak_gpu_memory_bytes"] is not None:
        lines[-1] += f", peak GPU {m['peak_gpu_memory_bytes'] / gib:.2f} GiB"
    if "search" in manifest:
        s = manifest["search"]
        lines.append(f"recipe auto: {s['winner']} ({s['seconds']:.0f} s of {s['budget_seconds']} s): {s['why']}")
    return "\n".join(lines)
