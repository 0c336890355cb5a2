"""Quantize a Hugging Face causal LM with llm-compressor: the SageMaker training-job entry point.

Contract (docs/quantize.md, design.md "Job contracts"):
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
import hashlib
import json
import logging
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs import calibration
from jobs.failure import JobFailureError, write_failure
from jobs.quantize_support import (
    SCHEME_INFO,
    GroupResolution,
    Hyperparameters,
    LinearShape,
    resolve_group_size,
    validate_hyperparameters,
)

LOG = logging.getLogger("quantize")
MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
# The artifact is written into ``<SM_MODEL_DIR>/.partial-<pid>`` and moved up when complete.
STAGING_PREFIX = ".partial-"
# Files that make a model directory usable besides the weights: tokenizer, chat template,
# generation defaults. Copied verbatim so the artifact serves exactly like the source.
SIDECAR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin")
SMOOTHQUANT_STRENGTH = 0.8  # llm-compressor's W8A8 examples; 0.5 is the paper's default for OPT
VERSIONED_PACKAGES = ("llmcompressor", "compressed-tensors", "transformers", "torch", "accelerate")


@dataclass(frozen=True)
class Paths:
    model: Path
    calibration: Path
    output: Path
    failure_dir: Path
    config: Path

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        return cls(
            model=Path(env.get("SM_CHANNEL_MODEL", "/opt/ml/input/data/model")),
            calibration=Path(env.get("SM_CHANNEL_CALIBRATION", "/opt/ml/input/data/calibration")),
            output=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            failure_dir=Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output")),
            config=Path(env.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")) / "hyperparameters.json",
        )


# --------------------------------------------------------------------------------------------
# Hyperparameters


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


def _json_string(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def read_hyperparameters(argv: list[str] | None, config_file: Path) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if config_file.is_file():
        try:
            loaded = json.loads(config_file.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as exc:
            raise JobFailureError(f"{config_file} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(loaded, dict):
            raise JobFailureError(f"{config_file} must hold a JSON object")
        # The SageMaker Python SDK JSON-encodes each value ('"gptq"'); the raw API does not.
        raw.update({k: _json_string(v) for k, v in loaded.items()})
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        # SageMaker runs a bring-your-own training image as `<entrypoint> train`.
        argv = argv[1:]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise JobFailureError(f"unknown argument(s): {' '.join(unknown)}")
    raw.update({k: v for k, v in vars(args).items() if v is not None})
    return raw


# --------------------------------------------------------------------------------------------
# Preflight: everything that can be checked before a model is loaded onto a device


@dataclass
class CalibrationPlan:
    texts: list[str]
    # True where the text came from the chat template, which already holds the special tokens
    # (Llama 3's template writes <|begin_of_text|>; adding BOS again would double it).
    templated: list[bool]
    sha256: str | None
    files: list[str]
    records_available: int
    shapes: dict[str, int]
    warnings: list[str]


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise JobFailureError(f"model directory not found: {model_dir} (SM_CHANNEL_MODEL)")
    if not (model_dir / "config.json").is_file():
        raise JobFailureError(f"{model_dir} is not a Hugging Face model directory: config.json is missing")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in model_dir.iterdir()):
        raise JobFailureError(f"{model_dir} holds no weights (*.safetensors or *.bin)")


def check_output_dir(output: Path) -> None:
    if not output.exists():
        return
    if not output.is_dir():
        raise JobFailureError(f"output path {output} is not a directory")
    entries = sorted(p.name for p in output.iterdir())
    if entries and all(name.startswith(STAGING_PREFIX) for name in entries):
        raise JobFailureError(
            f"output directory {output} is not empty: it holds {entries[0]}, the unfinished staging directory "
            "of an interrupted run; remove it"
        )
    if entries:
        raise JobFailureError(f"output directory {output} is not empty; refusing to overwrite an artifact")


# --------------------------------------------------------------------------------------------
# The instance: a GPU host whose torch sees no CUDA must not quantize on the CPU for hours

# SageMaker's NVIDIA GPU instance families (ml.p3, ml.p4d, ml.p5, ml.g4dn, ml.g5, ml.g6, ...).
GPU_INSTANCE_TYPE = re.compile(r"^ml\.[pg]\d")
NVIDIA_SMI_TIMEOUT_S = 30


@dataclass(frozen=True)
class GpuProbe:
    """Where the signs of NVIDIA GPUs are read; each can be pointed elsewhere (tests).

    - ``/dev/nvidia<N>``: the device nodes the NVIDIA container runtime passes in
      (``LLMQ_DEV_DIR`` moves /dev);
    - ``current_instance_type`` in SageMaker's ``resourceconfig.json`` (``SM_INPUT_CONFIG_DIR``);
    - ``nvidia-smi --list-gpus``, the count SageMaker's training toolkit uses
      (``LLMQ_NVIDIA_SMI`` names another executable).
    """

    dev_dir: Path
    resource_config: Path
    nvidia_smi: str

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> GpuProbe:
        env = os.environ if env is None else env
        return cls(
            dev_dir=Path(env.get("LLMQ_DEV_DIR", "/dev")),
            resource_config=Path(env.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")) / "resourceconfig.json",
            nvidia_smi=env.get("LLMQ_NVIDIA_SMI", "nvidia-smi"),
        )

    def instance_type(self) -> str | None:
        try:
            config = json.loads(self.resource_config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        value = config.get("current_instance_type") if isinstance(config, dict) else None
        return value if isinstance(value, str) else None

    def listed_gpus(self) -> int:
        executable = shutil.which(self.nvidia_smi)
        if executable is None:
            return 0
        try:
            listing = subprocess.run(
                [executable, "--list-gpus"],
                capture_output=True,
                text=True,
                timeout=NVIDIA_SMI_TIMEOUT_S,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return 0
        return sum(1 for line in listing.splitlines() if line.startswith("GPU "))

    def evidence(self) -> list[str]:
        """One phrase per sign that this host has NVIDIA GPUs (empty: a CPU host)."""
        found = []
        devices = sorted(p.name for p in self.dev_dir.glob("nvidia[0-9]*")) if self.dev_dir.is_dir() else []
        if devices:
            found.append(f"{self.dev_dir / devices[0]} exists")
        instance = self.instance_type()
        if instance is not None and GPU_INSTANCE_TYPE.match(instance):
            found.append(f"the instance type is {instance}")
        gpus = self.listed_gpus()
        if gpus:
            found.append(f"nvidia-smi lists {gpus} GPU(s)")
        return found


def check_gpu_is_usable(probe: GpuProbe) -> None:
    """Refuse to start when the host has NVIDIA GPUs but torch sees no CUDA device.

    Quantizing a large model on the CPU takes hours instead of minutes: a wrong image (a CPU
    build of torch, a CUDA build newer than the driver) must fail in seconds, with the reason.
    """
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        return
    evidence = probe.evidence()
    if not evidence:
        return
    build = (
        "a CPU-only build"
        if torch.version.cuda is None
        else f"built for CUDA {torch.version.cuda}: check the NVIDIA driver and the container runtime"
    )
    raise JobFailureError(
        f"this instance has NVIDIA GPUs ({'; '.join(evidence)}) but torch {torch.__version__} ({build}) sees no "
        "CUDA device; refusing to quantize on the CPU. Use an image whose torch matches the instance's driver "
        "(containers/quantize builds FROM the PyTorch training DLC) or a CPU instance type"
    )


def model_source_dtype(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    if dtype not in ("bfloat16", "float16", "float32"):
        raise JobFailureError(f"unsupported source dtype {dtype!r} in config.json (expected bf16, fp16 or fp32)")
    return str(dtype)


def linear_shapes(model_dir: Path) -> list[LinearShape]:
    """The model's Linear layers, from a weightless (meta-device) instance: costs no memory."""
    import torch  # noqa: PLC0415  (heavy; the pure preflight above runs without it)
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: PLC0415

    try:
        config = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, OSError) as exc:
        raise JobFailureError(f"cannot build the model from {model_dir}/config.json: {exc}") from None
    return [
        LinearShape(name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]


def plan_calibration(hp: Hyperparameters, location: Path, render: calibration.ChatRenderer | None) -> CalibrationPlan:
    if not hp.needs_calibration:
        return CalibrationPlan([], [], None, [], 0, {}, [])
    try:
        files = calibration.find_files(location)
        root = location if location.is_dir() else location.parent
        records = calibration.load_records(files, root=root)
        chosen = calibration.select(records, hp.num_calibration_samples, hp.seed)
        texts = [calibration.record_text(r, render) for r in chosen]
        templated = [r.shape == "messages" for r in chosen]
    except calibration.CalibrationError as exc:
        raise JobFailureError(f"calibration data: {exc}") from None
    warnings = []
    if len(records) < hp.num_calibration_samples:
        warnings.append(
            f"calibration set has {len(records)} records, fewer than the {hp.num_calibration_samples} asked; "
            f"using all {len(records)}"
        )
        LOG.warning(warnings[-1])
    shapes: dict[str, int] = {}
    for record in chosen:
        shapes[record.shape] = shapes.get(record.shape, 0) + 1
    return CalibrationPlan(
        texts=texts,
        templated=templated,
        sha256=calibration.files_sha256(files, root=root),
        files=[str(p.relative_to(root)) for p in files],
        records_available=len(records),
        shapes=shapes,
        warnings=warnings,
    )


# --------------------------------------------------------------------------------------------
# Quantization


def build_recipe(hp: Hyperparameters, resolution: GroupResolution) -> list[Any]:
    """The llm-compressor modifiers for one algorithm x scheme (named constants, no YAML)."""
    from compressed_tensors.quantization import preset_name_to_scheme  # noqa: PLC0415
    from llmcompressor.modifiers.gptq import GPTQModifier  # noqa: PLC0415
    from llmcompressor.modifiers.quantization import QuantizationModifier  # noqa: PLC0415
    from llmcompressor.modifiers.transform.awq import AWQModifier  # noqa: PLC0415
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier  # noqa: PLC0415

    scheme = preset_name_to_scheme(hp.scheme, ["Linear"])
    if resolution.effective is not None:
        scheme.weights.group_size = resolution.effective
    quant_args: dict[str, Any] = {"config_groups": {"group_0": scheme}, "ignore": list(resolution.ignore)}
    if hp.algorithm == "rtn":
        return [QuantizationModifier(**quant_args)]
    if hp.algorithm == "gptq":
        return [GPTQModifier(**quant_args)]
    if hp.algorithm == "smoothquant-gptq":
        return [SmoothQuantModifier(smoothing_strength=SMOOTHQUANT_STRENGTH), GPTQModifier(**quant_args)]
    if hp.algorithm == "awq":
        # AWQ is a transform (scales) followed by the quantizer that picks the weights' grid.
        return [AWQModifier(), QuantizationModifier(**quant_args)]
    raise JobFailureError(f"no recipe for algorithm {hp.algorithm}")  # unreachable after validation


@contextlib.contextmanager
def cpu_safe_intermediates_cache() -> Iterator[None]:
    """Make llm-compressor's AWQ run on a CPU-only torch.

    AWQ pins its cached activations (``IntermediatesCache.pin_memory``) to speed up host to GPU
    copies; on a CPU-only torch ``Tensor.pin_memory`` raises "Cannot access accelerator device
    when none is available". Without an accelerator there is no copy to speed up, so pinning is
    skipped for the duration of the run; with one, nothing is changed.
    """
    import torch  # noqa: PLC0415
    from llmcompressor.pipelines.cache import IntermediatesCache  # noqa: PLC0415

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory

    def _no_pin(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    IntermediatesCache.pin_memory = _no_pin
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original


def tokenize(tokenizer: Any, plan: CalibrationPlan, max_seq_length: int) -> Any:
    """Pre-tokenized samples in the plan's order; oneshot uses such a dataset as is."""
    from datasets import Dataset  # noqa: PLC0415

    input_ids = []
    for text, templated in zip(plan.texts, plan.templated, strict=True):
        encoded = tokenizer(text, truncation=True, max_length=max_seq_length, add_special_tokens=not templated)
        input_ids.append(list(encoded["input_ids"]))
    return Dataset.from_dict({"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids]})


def seed_everything(seed: int) -> None:
    import torch  # noqa: PLC0415

    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np  # noqa: PLC0415

        np.random.seed(seed)


def directory_sha256(directory: Path) -> str:
    """A digest of every file's relative name and bytes: identifies the exact source model."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(1 << 23):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def directory_bytes(directory: Path, *, exclude: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and p.name not in exclude)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name.replace("-", "_")] = metadata.version(name)
    return found


def hardware() -> dict[str, Any]:
    import torch  # noqa: PLC0415

    info: dict[str, Any] = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def peak_cpu_rss_bytes() -> int:
    """This process's resident-memory high-water mark.

    Linux's ``VmHWM`` belongs to the current program image. ``ru_maxrss`` is not usable
    alone: it survives fork and exec, so a job started by a large parent (the benchmark, the
    pilot) reported the parent's 2 GiB as its own peak.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def cast_dense_parameters(model: Any, dtype: Any) -> None:
    """Cast the 16/32-bit float parameters (norms, embeddings, scales, ignored layers) to ``dtype``.

    ``model.to(dtype)`` is not usable here: it also casts float8 weights (FP8 schemes are
    floating point too) back to 16 bits, which silently undoes the compression.
    """
    import torch  # noqa: PLC0415

    dense = (torch.float32, torch.float16, torch.bfloat16)
    for param in model.parameters():
        if param.dtype in dense and param.dtype != dtype:
            param.data = param.data.to(dtype)


def quantize_into(
    *,
    hp: Hyperparameters,
    paths: Paths,
    staging: Path,
    resolution: GroupResolution,
    plan: CalibrationPlan,
    source_dtype: str,
    tokenizer: Any,
) -> dict[str, Any]:
    """Load, calibrate, quantize and save the compressed model into ``staging``."""
    import torch  # noqa: PLC0415
    from compressed_tensors.compressors import ModelCompressor  # noqa: PLC0415
    from llmcompressor import oneshot  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    on_gpu = torch.cuda.is_available()
    # On CPU, bf16 matmuls have no hardware support here and run many times slower than
    # float32; calibrate in float32 and cast back to the source dtype before saving.
    load_dtype = getattr(torch, source_dtype) if on_gpu else torch.float32
    seed_everything(hp.seed)
    started = time.monotonic()
    # Kept in CPU memory: llm-compressor's sequential pipeline onloads one layer at a time.
    model = AutoModelForCausalLM.from_pretrained(str(paths.model), dtype=load_dtype)
    model.eval()
    load_seconds = time.monotonic() - started

    dataset = tokenize(tokenizer, plan, hp.max_seq_length) if plan.texts else None
    tokens = sum(len(ids) for ids in dataset["input_ids"]) if dataset is not None else 0
    recipe = build_recipe(hp, resolution)
    LOG.info("recipe: %s", [type(m).__name__ for m in recipe])
    started = time.monotonic()
    with cpu_safe_intermediates_cache():
        oneshot(
            model=model,
            processor=tokenizer,
            recipe=recipe,
            dataset=dataset,
            num_calibration_samples=len(plan.texts) or 1,
            max_seq_length=hp.max_seq_length,
            shuffle_calibration_samples=False,
        )
    calibrate_seconds = time.monotonic() - started

    started = time.monotonic()
    target_dtype = getattr(torch, source_dtype)
    if model.dtype != target_dtype:
        # Compress (round to the integer grid) while the weights and scales are still in the
        # calibration precision, then cast what stays dense back to the source dtype.
        # Casting first would re-round int8 weights against bf16 scales and move some of them
        # by one step.
        ModelCompressor.from_pretrained_model(model).compress_model(model)
        cast_dense_parameters(model, target_dtype)
    model.save_pretrained(str(staging), save_compressed=True)
    tokenizer.save_pretrained(str(staging))
    for name in SIDECAR_FILES:
        if (paths.model / name).is_file():
            shutil.copyfile(paths.model / name, staging / name)
    save_seconds = time.monotonic() - started
    return {
        "load_seconds": round(load_seconds, 3),
        "calibrate_seconds": round(calibrate_seconds, 3),
        "save_seconds": round(save_seconds, 3),
        "calibration_tokens": tokens,
        "calibration_dtype": str(load_dtype).removeprefix("torch."),
        "peak_gpu_memory_bytes": int(torch.cuda.max_memory_reserved()) if on_gpu else None,
    }


def make_staging(output: Path) -> Path:
    """A fresh hidden directory *inside* the output directory for the artifact being written.

    SageMaker mounts /opt/ml/model on its own volume, so a directory beside it (in /opt/ml)
    would be on another filesystem and the final move would fail with EXDEV. Inside the output
    directory, publishing is always a same-filesystem rename; the artifact is unfinished until
    manifest.json arrives at the top level.
    """
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def publish(staging: Path, output: Path) -> None:
    """Move the finished artifact from ``staging`` up into ``output``; manifest.json moves last.

    Every move is a rename within one directory tree (``staging`` is a child of ``output``), so
    none can cross a mount; the manifest, which marks an artifact as finished, arrives after
    every other file.
    """
    if staging.parent != output:
        raise ValueError(f"staging {staging} must be a directory inside {output}")
    for child in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST):
        child.rename(output / child.name)
    staging.rmdir()


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
                "schema_version": MANIFEST_SCHEMA_VERSION,
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
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
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
        raw = read_hyperparameters(argv, paths.config)
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


if __name__ == "__main__":
    sys.exit(main())
