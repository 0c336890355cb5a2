"""The CUDA path: sequential onloading onto the GPU, peak GPU memory in the manifest.

Runs where CUDA is present; skipped elsewhere. Uses the real SmolLM2-135M so the GPU kernels
of GPTQ and AWQ (no CPU workaround involved) are exercised on a real model.
"""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA not available here)"),
]


@pytest.mark.parametrize(("algorithm", "scheme"), [("gptq", "W4A16"), ("awq", "W4A16_ASYM"), ("rtn", "FP8_DYNAMIC")])
def test_quantizes_on_the_gpu_and_saves_in_the_source_dtype(run_job, smollm2_dir, pydoc_calibration, algorithm, scheme):
    args = ("--algorithm", algorithm, "--scheme", scheme, "--num-calibration-samples", "32", "--max-seq-length", "512")
    result = run_job(smollm2_dir, *args, calibration=pydoc_calibration)
    assert result.code == 0, result.failure
    manifest = result.manifest
    assert manifest["hardware"]["device"] == "cuda" and manifest["hardware"]["gpu"]
    assert manifest["metrics"]["peak_gpu_memory_bytes"] > 0
    # Sequential onloading: far less GPU memory than the whole model in fp32 would take.
    assert manifest["metrics"]["peak_gpu_memory_bytes"] < 4 * manifest["metrics"]["source_bytes"]
    assert manifest["calibration"]["dtype"] in (None, "bfloat16")
    config = json.loads((result.output / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
