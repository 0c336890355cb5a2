"""The precision the quantize job calibrates in and saves (jobs/quantize/compress.py).

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


def test_casting_back_reaches_offloaded_parameters(monkeypatch: pytest.MonkeyPatch):
    """After a sequential run on a GPU every module is offloaded and each read of a parameter
    returns a copy on the GPU. Emulated on a CPU by onloading copies: the cast must still reach
    the tensors that are saved (it did not, and a float32-calibrated artifact kept float32
    scales and unquantized layers)."""
    from compressed_tensors.offload.cache import cpu
    from compressed_tensors.offload.module import offload_module

    from jobs.quantize.compress import cast_dense_parameters

    monkeypatch.setattr(cpu.CPUCache, "onload", lambda self, tensor: None if tensor is None else tensor.clone())
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    for module in model:
        offload_module(module, torch.device("cpu"), torch.device("cpu"))
    cast_dense_parameters(model, torch.bfloat16)
    saved = model.state_dict()
    assert {name: t.dtype for name, t in saved.items()} == dict.fromkeys(saved, torch.bfloat16)
