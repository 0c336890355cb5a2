"""The precision the quantize job calibrates in (jobs/quantize/compress.py ``calibration_dtype``).

float32 on a CPU whatever the size; on a GPU float32 only for sources of at most
FLOAT32_CALIBRATION_MAX_PARAMETERS, else the source dtype. The GPU branch is exercised by
pretending CUDA is there: the decision reads only the weight files' size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contracts.support_table import FLOAT32_CALIBRATION_MAX_PARAMETERS
from jobs.quantize.compress import calibration_dtype


def _source(directory: Path, parameters: int) -> Path:
    directory.mkdir()
    with (directory / "model.safetensors").open("wb") as handle:  # sparse: no disk used
        handle.truncate(parameters * 2)
    return directory


def test_cpu_always_calibrates_in_float32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    big = _source(tmp_path / "big", 2 * FLOAT32_CALIBRATION_MAX_PARAMETERS)
    assert calibration_dtype(big, "bfloat16") == torch.float32


def test_gpu_calibrates_small_sources_in_float32_and_large_ones_in_their_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    small = _source(tmp_path / "small", FLOAT32_CALIBRATION_MAX_PARAMETERS)
    large = _source(tmp_path / "large", FLOAT32_CALIBRATION_MAX_PARAMETERS + 1)
    assert calibration_dtype(small, "bfloat16") == torch.float32
    assert calibration_dtype(large, "bfloat16") == torch.bfloat16
    assert calibration_dtype(large, "float16") == torch.float16
