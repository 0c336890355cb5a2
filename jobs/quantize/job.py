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

Several GPUs: this process becomes the launcher of one rank per GPU (``launch``); each rank is
this module again (``rank_main``), and rank 0 alone writes the artifact, the manifest and the
failure file (``distributed``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from contracts.artifact_layout import MANIFEST_FILE
from jobs.quantize import distributed, families, fitness, launch, search, sensitivity
from jobs.quantize.artifact import directory_bytes, directory_sha256, make_staging, publish
from jobs.quantize.compress import LOG, quantize_into
from jobs.quantize.gpu_probe import GpuProbe, check_gpu_is_usable
from jobs.quantize.manifest import Prepared, build_manifest, distribution, summary
from jobs.quantize.preflight import (
    Paths,
    check_model_dir,
    check_output_dir,
    model_source_dtype,
    plan_calibration,
)
from jobs.quantize.support import Hyperparameters, resolve_group_size, validate_hyperparameters
from jobs.sagemaker_job.failure import JobFailureError, write_failure
from jobs.sagemaker_job.hyperparameters import read_hyperparameters, strip_train

# The hyperparameters and their help. Every option is a string that defaults to None, so that "not
# given" is distinguishable from a default and hyperparameters.json can fill it (arguments win).
OPTIONS = {
    "algorithm": "awq, gptq, smoothquant-gptq or rtn (default gptq)",
    "scheme": "W4A16, W4A16_ASYM, W8A16, W8A8, FP8_DYNAMIC or W3A16 (default W4A16)",
    "group-size": "128, 64 or 32 (default 128; reduced per model if needed)",
    "num-calibration-samples": "records used for calibration (default 128)",
    "max-seq-length": "tokens per calibration record (default 2048)",
    "ignore": "comma-separated module names or re:<regex> kept unquantized",
    "seed": "seed for sample selection and torch (default 0)",
    "recipe": "fixed (the algorithm given; default) or auto (searched, docs/quantize.md)",
    "search-budget-seconds": "recipe auto: the search's time budget (default 3600)",
    "search-candidates": "recipe auto: comma-separated candidate names to try (default all)",
    "num-processes": "ranks: auto (one per GPU; default) or a number (docs/quantize.md, Several GPUs)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Quantize a causal LM with llm-compressor (SageMaker job)")
    for option, text in OPTIONS.items():
        parser.add_argument(f"--{option}", help=text)
    return parser


def read_arguments(argv: list[str] | None, config_dir: Path) -> dict[str, Any]:
    """Raw hyperparameters: hyperparameters.json (jobs/sagemaker_job/hyperparameters.py reads it,
    as the evaluate job does), then the command line's, which win."""
    raw: dict[str, Any] = dict(read_hyperparameters(config_dir))
    args, unknown = build_parser().parse_known_args(strip_train(argv))
    if unknown:
        raise JobFailureError(f"unknown argument(s): {' '.join(unknown)}")
    raw.update({k: v for k, v in vars(args).items() if v is not None})
    return raw


def prepare(hp: Hyperparameters, paths: Paths, rank: distributed.Rank | None = None) -> Prepared:
    """Preflight (docs/quantize.md): nothing heavy is loaded and nothing is written."""
    check_model_dir(paths.model)
    if rank is None or rank.is_source:
        check_output_dir(paths.output)  # only rank 0 ever writes there
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
    if rank is not None and len(plan.texts) < rank.world_size:
        raise JobFailureError(
            f"{len(plan.texts)} calibration sample(s) cannot be split across {rank.world_size} ranks "
            "(each needs at least one): use more samples or fewer processes"
        )
    family, layers = families.plan_family(paths.model)
    # The family's modules (routers, vision tower and projector) join the ignore list by name.
    ignore = (*family.left_unquantized, *hp.ignore)
    resolution = resolve_group_size(hp.group_size, layers, ignore=ignore, grouped=hp.grouped)
    for change in resolution.changes:
        LOG.warning("group-size rule: %s", change)
    if resolution.quantized_layers == 0:
        raise JobFailureError("no Linear layer left to quantize after applying ignore and the group-size rule")
    report = None
    if plan.texts:
        try:
            validation = fitness.validation_texts(paths.validation)
        except ValueError as exc:  # records.RecordError: the report says so, the job goes on
            validation, problem = None, f"validation set unreadable for the fitness report: {exc}"
            plan.warnings.append(problem)
        lengths = fitness.token_lengths(tokenizer, plan.texts)
        report = fitness.report(plan.contents or plan.texts, lengths, hp.max_seq_length, validation)
    return Prepared(source_dtype, tokenizer, plan, resolution, layers, report, family)


def prepare_on_every_rank(hp: Hyperparameters, paths: Paths, rank: distributed.Rank) -> Prepared:
    """The preflight on each rank; if it fails on any, it fails on all (no rank goes on alone)."""
    problem, prepared = None, None
    try:
        prepared = prepare(hp, paths, rank)
    except JobFailureError as exc:
        problem = str(exc)
    distributed.agree(problem, rank)
    assert prepared is not None  # agree raised otherwise
    return prepared


def run(
    hp: Hyperparameters, paths: Paths, probe: GpuProbe | None = None, rank: distributed.Rank | None = None
) -> dict[str, Any] | None:
    """Quantize and publish; with ``rank``, this rank's part (the manifest only on rank 0)."""
    wall_started = time.monotonic()
    check_gpu_is_usable(probe if probe is not None else GpuProbe.from_environment())
    backend = None
    if rank is not None:
        backend = distributed.start(rank, distributed.collective_timeout(directory_bytes(paths.model)))
        prepared = prepare_on_every_rank(hp, paths, rank)
    else:
        prepared = prepare(hp, paths)
    source = rank is None or rank.is_source

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # Hashing a large model takes minutes; it overlaps with calibration.
        source_hash = pool.submit(directory_sha256, paths.model) if source else None
        created_output = not paths.output.exists()
        name = rank.staging_name if rank else None
        staging = make_staging(paths.output, name) if source else paths.output / str(name)
        published = False
        try:
            stats = quantize(hp, paths, staging, prepared, rank)
            stats["distributed"] = distribution(rank, backend, stats)
            if source_hash is None:
                return None  # not rank 0: its part ended with the collective save
            stats["layer_bytes"] = sensitivity.byte_report(
                staging,
                prepared.layers,
                scheme=hp.scheme,
                group_size=prepared.resolution.effective,
                ignore=prepared.resolution.ignore,
                high_precision=tuple(stats.get("high_precision", ())),
            )
            manifest = build_manifest(
                hp=hp,
                paths=paths,
                staging=staging,
                prepared=prepared,
                stats=stats,
                source_sha256=source_hash.result(),
                wall_seconds=time.monotonic() - wall_started,
            )
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            for child in staging.iterdir():
                # safetensors writes owner-only files; the artifact is meant to be read by servers.
                child.chmod(0o644)
            publish(staging, paths.output)
            published = True
        finally:
            if source:
                shutil.rmtree(staging, ignore_errors=True)
                if not published and created_output:
                    # Leave nothing behind that the job created; a mounted /opt/ml/model stays.
                    with contextlib.suppress(OSError):
                        paths.output.rmdir()
    return manifest


def quantize(
    hp: Hyperparameters, paths: Paths, staging: Path, prepared: Prepared, rank: distributed.Rank | None
) -> dict[str, Any]:
    """The fixed recipe, or the automatic recipe's search (one process: launch.process_count)."""
    if hp.recipe == "auto":
        if rank is not None and rank.world_size > 1:  # started by torchrun by hand
            raise JobFailureError("recipe auto runs in one process: use num_processes auto or 1")
        return search.search_into(hp=hp, paths=paths, staging=staging, prepared=prepared)
    return quantize_into(
        hp=hp,
        paths=paths,
        staging=staging,
        resolution=prepared.resolution,
        plan=prepared.plan,
        source_dtype=prepared.source_dtype,
        tokenizer=prepared.tokenizer,
        rank=rank,
        family=prepared.family,
    )


def hyperparameters(argv: list[str] | None, paths: Paths) -> tuple[Hyperparameters, str]:
    """The validated hyperparameters, and the launch setting ``num_processes`` (not one of them:
    it changes how the job runs, not what it produces)."""
    raw = read_arguments(argv, paths.config_dir)
    processes = launch.pop_processes(raw)
    hp, problems = validate_hyperparameters(raw)
    if hp is None:
        raise JobFailureError("invalid hyperparameters: " + "; ".join(problems))
    return hp, processes


def reason(exc: Exception) -> str:
    """The failure file's line for ``exc``: bad input as written, anything else as a crash."""
    if isinstance(exc, JobFailureError):
        return str(exc)
    if isinstance(exc, distributed.RankStoppedError) or not distributed.is_consequence(exc):
        return f"internal error: {type(exc).__name__}: {exc}"
    if "timed out" in str(exc).lower():
        return (
            f"waited longer than the collective timeout ({distributed.TIMEOUT_ENV}) for the other ranks, "
            f"one of which hung or died: {type(exc).__name__}: {exc}"
        )
    return f"lost the other ranks, one of which died: {type(exc).__name__}: {exc}"


def rank_main(argv: list[str] | None, env: Mapping[str, str] | None, paths: Paths, rank: distributed.Rank) -> int:
    """One rank of a distributed run (started by the launcher, or by torchrun by hand)."""
    try:
        hp, _ = hyperparameters(argv, paths)
        manifest = run(hp, paths, GpuProbe.from_environment(env), rank)
    except Exception as exc:
        # The agent's SIGTERM (another rank failed too) must not cut the report short.
        with distributed.ignoring_sigterm():
            if not isinstance(exc, JobFailureError | distributed.RankStoppedError):
                traceback.print_exc()
            line = reason(exc)
            if not isinstance(exc, distributed.AgreedFailureError):
                line = distributed.failure_line(rank, line)
            code = 1 if isinstance(exc, JobFailureError) else 2
            root_cause = not distributed.is_consequence(exc)
            distributed.fail(rank, line, root_cause=root_cause, code=code, failure_dir=paths.failure_dir)
            LOG.error("rank %d failed: %s", rank.rank, line)
        return code
    distributed.finish()
    if manifest is not None:
        print(summary(manifest))
    return 0


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    # OpenMP threads that spin while waiting turn into a 50-100x slowdown when the CPU is
    # shared (measured: a SmolLM2 forward pass went from 0.8 s to 89 s at load 14 on 2 cores).
    # Must be set before torch is first imported; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = Paths.from_environment(env)
    rank = distributed.Rank.from_environment(env)
    if rank is not None:
        return rank_main(argv, env, paths, rank)
    try:
        hp, processes_setting = hyperparameters(argv, paths)
        LOG.info("hyperparameters: %s", asdict(hp))
        probe = GpuProbe.from_environment(env)
        check_gpu_is_usable(probe)
        processes = launch.process_count(processes_setting, hp)
        if processes > 1:
            launch.check_shared_memory(paths.model, processes)
            ranks_argv = strip_train(argv)
            return launch.run_ranks(ranks_argv, processes, paths.output, paths.failure_dir, env)
        manifest = run(hp, paths, probe)
    except Exception as exc:
        if not isinstance(exc, JobFailureError):
            # Not a bad input but a crash: keep the traceback in the log, one line in the failure file.
            traceback.print_exc()
        write_failure(reason(exc), paths.failure_dir)
        LOG.error("failed: %s", reason(exc))
        return 1 if isinstance(exc, JobFailureError) else 2
    assert manifest is not None  # one process: always rank 0
    print(summary(manifest))
    return 0
