"""Quantize a Hugging Face causal LM with llm-compressor: the SageMaker training-job entry point.

Contract (docs/quantize.md):
- hyperparameters as ``--name value`` arguments or from
  ``/opt/ml/input/config/hyperparameters.json`` (arguments win; every value may be a string);
- paths from ``SM_CHANNEL_MODEL``, ``SM_CHANNEL_CALIBRATION``, ``SM_MODEL_DIR`` and
  ``SM_OUTPUT_DIR``, defaulting to SageMaker's /opt/ml/... locations;
- output: a compressed-tensors model directory plus ``manifest.json``; a finished artifact is
  one whose directory holds ``manifest.json`` (it is written last, after an atomic move);
- any failure exits non-zero and writes one reason to ``$SM_OUTPUT_DIR/failure``, including
  a GPU instance whose torch sees no CUDA (refused before anything is loaded);
- the artifact is staged in a hidden directory inside ``SM_MODEL_DIR`` (the same volume, so
  publishing is a rename even where SageMaker mounts /opt/ml/model separately).

Large models: the model is loaded into CPU memory and llm-compressor's sequential pipeline
onloads one decoder layer at a time onto the GPU, so host RAM, not GPU memory, sizes the job
(docs/quantize.md has the sizing rule).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from contracts import manifest as manifest_contract
from contracts.artifact_layout import MANIFEST_FILE
from contracts.support_table import SCHEME_INFO
from jobs.quantize.artifact import (
    directory_bytes,
    directory_sha256,
    hardware,
    make_staging,
    peak_cpu_rss_bytes,
    publish,
    versions,
)
from jobs.quantize.compress import LOG, quantize_into
from jobs.quantize.gpu_probe import GpuProbe, check_gpu_is_usable
from jobs.quantize.preflight import (
    Paths,
    check_model_dir,
    check_output_dir,
    linear_shapes,
    model_source_dtype,
    plan_calibration,
)
from jobs.quantize.support import Hyperparameters, resolve_group_size, validate_hyperparameters
from jobs.sagemaker_job.failure import JobFailureError, write_failure
from jobs.sagemaker_job.hyperparameters import read_hyperparameters, strip_train


def build_parser() -> argparse.ArgumentParser:
    """Every option defaults to None so that "not given" is distinguishable from a default and
    hyperparameters.json can fill it (arguments win)."""
    parser = argparse.ArgumentParser(description="Quantize a causal LM with llm-compressor (SageMaker job)")
    parser.add_argument("--algorithm", help="awq, gptq, smoothquant-gptq or rtn (default gptq)")
    parser.add_argument("--scheme", help="W4A16, W4A16_ASYM, W8A16, W8A8, FP8_DYNAMIC or W3A16 (default W4A16)")
    parser.add_argument("--group-size", help="128, 64 or 32 (default 128; reduced per model if needed)")
    parser.add_argument("--num-calibration-samples", help="records used for calibration (default 128)")
    parser.add_argument("--max-seq-length", help="tokens per calibration record (default 2048)")
    parser.add_argument("--ignore", help="comma-separated module names or re:<regex> kept unquantized")
    parser.add_argument("--seed", help="seed for sample selection and torch (default 0)")
    return parser


def read_arguments(argv: list[str] | None, config_dir: Path) -> dict[str, Any]:
    """Raw hyperparameters: hyperparameters.json (jobs/sagemaker_job/hyperparameters.py reads it,
    as the evaluate job does), then the command line's, which win."""
    raw: dict[str, Any] = dict(read_hyperparameters(config_dir))
    args, unknown = build_parser().parse_known_args(strip_train(sys.argv[1:] if argv is None else argv))
    if unknown:
        raise JobFailureError(f"unknown argument(s): {' '.join(unknown)}")
    raw.update({k: v for k, v in vars(args).items() if v is not None})
    return raw


def run(hp: Hyperparameters, paths: Paths, probe: GpuProbe | None = None) -> dict[str, Any]:
    wall_started = time.monotonic()
    check_gpu_is_usable(probe if probe is not None else GpuProbe.from_environment())
    check_model_dir(paths.model)
    check_output_dir(paths.output)
    source_dtype = model_source_dtype(paths.model)

    from transformers import AutoTokenizer  # noqa: PLC0415

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(paths.model))
    except (OSError, ValueError) as exc:
        raise JobFailureError(f"cannot load the tokenizer from {paths.model}: {exc}") from None
    render = None
    if getattr(tokenizer, "chat_template", None):

        def render(messages: list[dict[str, Any]]) -> str:
            return str(tokenizer.apply_chat_template(messages, tokenize=False))

    plan = plan_calibration(hp, paths.calibration, render)
    layers = linear_shapes(paths.model)
    resolution = resolve_group_size(hp.group_size, layers, ignore=hp.ignore, grouped=hp.grouped)
    for change in resolution.changes:
        LOG.warning("group-size rule: %s", change)
    if resolution.quantized_layers == 0:
        raise JobFailureError("no Linear layer left to quantize after applying ignore and the group-size rule")

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # Hashing a large model takes minutes; it overlaps with calibration.
        source_hash = pool.submit(directory_sha256, paths.model)
        created_output = not paths.output.exists()
        staging = make_staging(paths.output)
        published = False
        try:
            stats = quantize_into(
                hp=hp,
                paths=paths,
                staging=staging,
                resolution=resolution,
                plan=plan,
                source_dtype=source_dtype,
                tokenizer=tokenizer,
            )
            saved_config = json.loads((staging / "config.json").read_text())
            manifest: dict[str, Any] = {
                "schema_version": manifest_contract.SCHEMA_VERSION,
                "job": "quantize",
                "quantization": {
                    "algorithm": hp.algorithm,
                    "scheme": hp.scheme,
                    "scheme_description": SCHEME_INFO[hp.scheme].description,
                    "group_size": resolution.effective,
                    "group_size_requested": hp.group_size if hp.grouped else None,
                    "ignore": resolution.ignore,
                    "changes": resolution.changes,
                    "quantized_layers": resolution.quantized_layers,
                    "format": saved_config.get("quantization_config", {}).get("format"),
                    "seed": hp.seed,
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
                    "note": None if hp.needs_calibration else f"{hp.algorithm} is data-free; no calibration read",
                },
                "source": {
                    "sha256": source_hash.result(),
                    "dtype": source_dtype,
                    "path": str(paths.model),
                },
                "artifact": {"dtype": source_dtype, "files": sorted(p.name for p in staging.iterdir())},
                "hyperparameters": asdict(hp),
                "versions": versions(),
                "hardware": hardware(),
                "metrics": {
                    "wall_seconds": round(time.monotonic() - wall_started, 3),
                    "load_seconds": stats["load_seconds"],
                    "calibrate_seconds": stats["calibrate_seconds"],
                    "save_seconds": stats["save_seconds"],
                    "source_bytes": directory_bytes(paths.model),
                    "artifact_bytes": directory_bytes(staging),
                    "peak_cpu_rss_bytes": peak_cpu_rss_bytes(),
                    "peak_gpu_memory_bytes": stats["peak_gpu_memory_bytes"],
                },
            }
            manifest["metrics"]["compression_ratio"] = round(
                manifest["metrics"]["source_bytes"] / max(1, manifest["metrics"]["artifact_bytes"]), 3
            )
            missing = manifest_contract.missing_fields(manifest)
            if missing:  # the record step would refuse the artifact: fail here, with the reason
                raise JobFailureError(f"internal error: the manifest lacks {', '.join(missing)}")
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            for child in staging.iterdir():
                # safetensors writes owner-only files; the artifact is meant to be read by servers.
                child.chmod(0o644)
            publish(staging, paths.output)
            published = True
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if not published and created_output:
                # Leave nothing behind that the job created; a mounted /opt/ml/model stays.
                with contextlib.suppress(OSError):
                    paths.output.rmdir()
    return manifest


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
    if m["peak_gpu_memory_bytes"] is not None:
        lines[-1] += f", peak GPU {m['peak_gpu_memory_bytes'] / gib:.2f} GiB"
    return "\n".join(lines)


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    # OpenMP threads that spin while waiting turn into a 50-100x slowdown when the CPU is
    # shared (measured: a SmolLM2 forward pass went from 0.8 s to 89 s at load 14 on 2 cores).
    # Must be set before torch is first imported; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = Paths.from_environment(env)
    try:
        raw = read_arguments(argv, paths.config_dir)
        hp, problems = validate_hyperparameters(raw)
        if hp is None:
            raise JobFailureError("invalid hyperparameters: " + "; ".join(problems))
        LOG.info("hyperparameters: %s", asdict(hp))
        manifest = run(hp, paths, GpuProbe.from_environment(env))
    except JobFailureError as exc:
        write_failure(str(exc), paths.failure_dir)
        LOG.error("failed: %s", exc)
        return 1
    except Exception as exc:
        # Not a bad input but a crash: keep the traceback in the log, one line in the failure file.
        traceback.print_exc()
        write_failure(f"internal error: {type(exc).__name__}: {exc}", paths.failure_dir)
        return 2
    print(summary(manifest))
    return 0
