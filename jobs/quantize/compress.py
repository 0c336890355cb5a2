"""Quantization proper: the llm-compressor recipe, calibration tokens, oneshot, and the save.

On CUDA the model stays in CPU memory and llm-compressor's sequential pipeline onloads one
decoder layer at a time; on CPU it is calibrated in float32 and cast back before saving.
With several ranks (jobs/quantize/distributed.py) every rank runs all of this: oneshot and the
save are collective (``save_pretrained`` writes on rank 0 only); the tokenizer and the sidecar
files are copied by rank 0 alone.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contracts.support_table import FLOAT32_CALIBRATION_MAX_PARAMETERS
from jobs.quantize import distributed, families
from jobs.quantize.preflight import CalibrationPlan, Paths
from jobs.quantize.recipes import SMOOTHQUANT_STRENGTH, quant_args
from jobs.quantize.support import (
    GroupResolution,
    Hyperparameters,
)
from jobs.sagemaker_job.failure import JobFailureError

LOG = logging.getLogger("quantize")


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
    # A vision-language model's processor settings (vLLM builds its image processor from them).
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
)


def build_recipe(hp: Hyperparameters, resolution: GroupResolution) -> list[Any]:
    """The llm-compressor modifiers for one algorithm x scheme (named constants, no YAML)."""
    from llmcompressor.modifiers.gptq import GPTQModifier  # noqa: PLC0415
    from llmcompressor.modifiers.quantization import QuantizationModifier  # noqa: PLC0415
    from llmcompressor.modifiers.transform.awq import AWQModifier  # noqa: PLC0415
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier  # noqa: PLC0415

    args = quant_args(hp.scheme, resolution)
    if hp.algorithm == "rtn":
        return [QuantizationModifier(**args)]
    if hp.algorithm == "gptq":
        return [GPTQModifier(**args)]
    if hp.algorithm == "smoothquant-gptq":
        return [SmoothQuantModifier(smoothing_strength=SMOOTHQUANT_STRENGTH), GPTQModifier(**args)]
    if hp.algorithm == "awq":
        # AWQ is a transform (scales) followed by the quantizer that picks the weights' grid.
        return [AWQModifier(), QuantizationModifier(**args)]
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


def token_dataset(input_ids: list[list[int]]) -> Any:
    """Samples of token ids, every token attended to: the dataset oneshot uses as is."""
    from datasets import Dataset  # noqa: PLC0415

    return Dataset.from_dict({"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids]})


def tokenize(tokenizer: Any, plan: CalibrationPlan, max_seq_length: int) -> Any:
    """Pre-tokenized samples in the plan's order."""
    input_ids = []
    for text, templated in zip(plan.texts, plan.templated, strict=True):
        encoded = tokenizer(text, truncation=True, max_length=max_seq_length, add_special_tokens=not templated)
        input_ids.append(list(encoded["input_ids"]))
    return token_dataset(input_ids)


def seed_everything(seed: int) -> None:
    import torch  # noqa: PLC0415

    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np  # noqa: PLC0415

        np.random.seed(seed)


def cast_dense_parameters(model: Any, dtype: Any) -> None:
    """Cast the 16/32-bit float parameters (norms, embeddings, scales, ignored layers) to ``dtype``.

    ``model.to(dtype)`` is not usable here: it also casts float8 weights (FP8 schemes are
    floating point too) back to 16 bits, which silently undoes the compression.

    After a sequential run on a GPU the model is offloaded: each parameter read returns a fresh
    copy on the GPU, so casting that copy changed nothing and the artifact kept float32 scales
    and layers (a float32-calibrated SmolLM2-135M: quantized layers 5.8 % over the physical
    size). With onloading disabled the offloaded tensors themselves are cast.
    """
    import torch  # noqa: PLC0415
    from compressed_tensors.offload import disable_onloading  # noqa: PLC0415

    dense = (torch.float32, torch.float16, torch.bfloat16)
    with disable_onloading():
        for param in model.parameters():
            if param.dtype in dense and param.dtype != dtype:
                param.data = param.data.to(dtype)


def calibration_dtype(model_dir: Path, source_dtype: str) -> Any:
    """The dtype the source is calibrated in (see ``load_for_calibration``)."""
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        return torch.float32
    dtype = getattr(torch, source_dtype)
    # Parameters from the weight files' size: headers are a negligible share of it.
    weight_bytes = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    parameters = weight_bytes / torch.empty((), dtype=dtype).element_size()
    return torch.float32 if parameters <= FLOAT32_CALIBRATION_MAX_PARAMETERS else dtype


def load_for_calibration(
    paths: Paths, source_dtype: str, seed: int, family: families.FamilyPlan | None = None
) -> tuple[Any, Any, float]:
    """(model, its dtype, seconds): the source in CPU memory, in the calibration precision.

    float32 on a CPU (bf16 matmuls have no hardware support here and run many times slower) and,
    on a GPU, for sources of at most ``FLOAT32_CALIBRATION_MAX_PARAMETERS`` (more accurate, and
    cheap at that size); larger sources calibrate in their own dtype. A float32 model is cast back
    to the source dtype before saving.
    """
    load_dtype = calibration_dtype(paths.model, source_dtype)
    seed_everything(seed)
    started = time.monotonic()
    # Kept in CPU memory: llm-compressor's sequential pipeline onloads one layer at a time.
    model = families.load_model(paths.model, load_dtype, family.info if family else None)
    model.eval()
    return model, load_dtype, time.monotonic() - started


def calibrate(model: Any, tokenizer: Any, recipe: list[Any], dataset: Any, max_seq_length: int) -> float:
    """Run ``oneshot`` with ``recipe`` on ``dataset`` (None: data-free); returns its seconds."""
    from llmcompressor import oneshot  # noqa: PLC0415

    LOG.info("recipe: %s", [type(m).__name__ for m in recipe])
    for modifier in recipe:
        # A modifier that cannot take samples of different lengths re-cuts them
        # (jobs/quantize/autoround_fixes.py); every other calibrates on the plan's samples.
        if dataset is not None and hasattr(modifier, "calibration_dataset"):
            dataset = modifier.calibration_dataset(dataset, max_seq_length)
            LOG.info("%s calibrates on %d samples of %d tokens", type(modifier).__name__, len(dataset),
                     len(dataset[0]["input_ids"]) if len(dataset) else 0)  # fmt: skip
    started = time.monotonic()
    with cpu_safe_intermediates_cache(), distributed.cpu_rank_barriers():
        oneshot(
            model=model,
            processor=tokenizer,
            recipe=recipe,
            dataset=dataset,
            num_calibration_samples=len(dataset) if dataset is not None else 1,
            max_seq_length=max_seq_length,
            shuffle_calibration_samples=False,
            # MoE: every expert sees every calibration token (routed output kept); docs/quantize.md.
            moe_calibrate_all_experts=True,
        )
    return time.monotonic() - started


def save_model(
    model: Any,
    staging: Path,
    *,
    source_dtype: str,
    tokenizer: Any,
    paths: Paths,
    rank: distributed.Rank | None,
    family: families.FamilyPlan | None = None,
) -> float:
    """Compress and write ``model`` (and the tokenizer and sidecar files) into ``staging``."""
    import torch  # noqa: PLC0415
    from compressed_tensors.compressors import ModelCompressor  # noqa: PLC0415

    started = time.monotonic()
    target_dtype = getattr(torch, source_dtype)
    if model.dtype != target_dtype:
        # Compress (round to the integer grid) while the weights and scales are still in the
        # calibration precision, then cast what stays dense back to the source dtype.
        # Casting first would re-round int8 weights against bf16 scales and move some of them
        # by one step.
        ModelCompressor.from_pretrained_model(model).compress_model(model)
        cast_dense_parameters(model, target_dtype)
    # Collective with several ranks (llm-compressor 0.14 syncs every rank around rank 0's write).
    model.save_pretrained(str(staging), save_compressed=True)
    if rank is None or rank.is_source:
        families.check_saved(model, staging, family)
        tokenizer.save_pretrained(str(staging))
        for name in SIDECAR_FILES:
            if (paths.model / name).is_file():
                shutil.copyfile(paths.model / name, staging / name)
    return time.monotonic() - started


def quantize_into(
    *,
    hp: Hyperparameters,
    paths: Paths,
    staging: Path,
    resolution: GroupResolution,
    plan: CalibrationPlan,
    source_dtype: str,
    tokenizer: Any,
    rank: distributed.Rank | None = None,
    family: families.FamilyPlan | None = None,
) -> dict[str, Any]:
    """Load, calibrate, quantize and save the compressed model into ``staging``.

    With ``rank``, this rank's part of a distributed run: every rank calls this, and only rank 0
    writes into ``staging``.
    """
    import torch  # noqa: PLC0415

    model, load_dtype, load_seconds = load_for_calibration(paths, source_dtype, hp.seed, family)
    dataset = tokenize(tokenizer, plan, hp.max_seq_length) if plan.texts else None
    tokens = sum(len(ids) for ids in dataset["input_ids"]) if dataset is not None else 0
    if dataset is not None and rank is not None:
        dataset = dataset.select(range(*distributed.partition(len(dataset), rank)))  # this rank's samples
    calibrate_seconds = calibrate(model, tokenizer, build_recipe(hp, resolution), dataset, hp.max_seq_length)
    save_seconds = save_model(
        model, staging, source_dtype=source_dtype, tokenizer=tokenizer, paths=paths, rank=rank, family=family
    )
    return {
        "load_seconds": round(load_seconds, 3),
        "calibrate_seconds": round(calibrate_seconds, 3),
        "save_seconds": round(save_seconds, 3),
        "calibration_tokens": tokens,
        "calibration_dtype": str(load_dtype).removeprefix("torch."),
        "peak_gpu_memory_bytes": int(torch.cuda.max_memory_reserved()) if torch.cuda.is_available() else None,
        "rank_samples": len(dataset) if dataset is not None else 0,
    }
