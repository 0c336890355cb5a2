"""Preflight: everything the quantize job checks before a model is loaded onto a device.

Paths (SageMaker's variables), the model and output directories, the source dtype and the
calibration plan. The Linear layer shapes come from jobs/quantize/families.py, which builds the
module tree of the model's family.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import prompt_drift
from contracts.prompt_records import plain_text
from jobs.quantize.artifact import STAGING_PREFIX
from jobs.quantize.support import Hyperparameters
from jobs.sagemaker_job import records as data
from jobs.sagemaker_job.failure import JobFailureError

LOG = logging.getLogger("quantize")


WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class Paths:
    model: Path
    calibration: Path
    output: Path
    failure_dir: Path
    config_dir: Path  # where hyperparameters.json is (SM_INPUT_CONFIG_DIR)
    # Optional: read only for the calibration fitness report (jobs/quantize/fitness.py).
    validation: Path | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        return cls(
            model=Path(env.get("SM_CHANNEL_MODEL", "/opt/ml/input/data/model")),
            calibration=Path(env.get("SM_CHANNEL_CALIBRATION", "/opt/ml/input/data/calibration")),
            output=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            failure_dir=Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output")),
            config_dir=Path(env.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")),
            validation=Path(env.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation")),
        )


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
    # The chosen records' prompt profile as plain text (contracts/prompt_drift.py): the reference the
    # input-drift function compares captured traffic with; None for data-free algorithms.
    profile: dict[str, Any] | None = None
    # The samples as plain text (messages joined by their contents): what the fitness report's
    # word statistics count, as the live drift check counts prompts.
    contents: list[str] = field(default_factory=list)

    @classmethod
    def of_texts(cls, texts: list[str]) -> CalibrationPlan:
        """A plan of plain, untemplated texts read from no file (tests and benchmarks)."""
        return cls(texts, [False] * len(texts), None, [], len(texts), {}, [], contents=list(texts))


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


def model_source_dtype(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    if dtype not in ("bfloat16", "float16", "float32"):
        raise JobFailureError(f"unsupported source dtype {dtype!r} in config.json (expected bf16, fp16 or fp32)")
    return str(dtype)


def plan_calibration(hp: Hyperparameters, location: Path, render: data.ChatRenderer | None) -> CalibrationPlan:
    if not hp.needs_calibration:
        return CalibrationPlan([], [], None, [], 0, {}, [])
    try:
        files = data.find_files(location)
        root = location if location.is_dir() else location.parent
        records = data.load_records(files, root=root)
        chosen = data.select(records, hp.num_calibration_samples, hp.seed)
        texts = [data.record_text(r, render) for r in chosen]
        templated = [r.shape == "messages" for r in chosen]
        # One plain-text reading of each record (contracts/prompt_records.py), as the drift check reads
        # captured prompts: the stored profile and the fitness report count the same words.
        contents = [plain_text(r.data) for r in chosen]
        reference = prompt_drift.profile(contents).to_json()
    except data.RecordError as exc:
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
        sha256=data.files_sha256(files, root=root),
        files=[str(p.relative_to(root)) for p in files],
        records_available=len(records),
        shapes=shapes,
        warnings=warnings,
        profile=reference,
        contents=contents,
    )
