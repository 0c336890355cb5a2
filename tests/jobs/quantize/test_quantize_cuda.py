"""The CUDA path: sequential onloading onto the GPU, peak GPU memory in the manifest, and one
rank per GPU where there are several.

Runs where CUDA is present (the distributed test only where at least 2 GPUs are); skipped
elsewhere. Uses the real SmolLM2-135M so the GPU kernels of GPTQ and AWQ (no CPU workaround
involved) are exercised on a real model.
"""

from __future__ import annotations

import json

import pytest
import torch

from jobs.sagemaker_job.perplexity import model_perplexity
from tests.jobs.quantize.entrypoint import run_variants

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


GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.skipif(GPUS < 2, reason=f"the distributed path needs at least 2 GPUs; {GPUS} visible")
def test_one_rank_per_visible_gpu_gives_the_one_gpu_artifact(tmp_path, smollm2_dir, pydoc_calibration, held_out_text):
    """The real entrypoint with ``num_processes auto`` on every visible GPU (NCCL, the model shared
    through /dev/shm) against one GPU and the same data. Within noise, as on CPU
    (test_quantize_distributed.py): the N-rank model's perplexity is no further from the 1-GPU
    model's than another calibration seed's is, or 1 % of it, whichever is larger."""
    args = ("--algorithm", "gptq", "--scheme", "W4A16", "--num-calibration-samples", "32", "--max-seq-length", "512")
    runs = {"one": ("--num-processes", "1"), "all": (), "one-seed-1": ("--num-processes", "1", "--seed", "1")}
    out = run_variants(tmp_path, smollm2_dir, pydoc_calibration, args, runs)
    manifest = json.loads((out["all"] / "manifest.json").read_text())
    assert (manifest["distributed"]["world_size"], manifest["distributed"]["backend"]) == (GPUS, "nccl")
    assert all(r["peak_gpu_memory_bytes"] > 0 for r in manifest["distributed"]["ranks"])
    assert sum(r["calibration_samples"] for r in manifest["distributed"]["ranks"]) == 32
    one_config, all_config = (json.loads((out[n] / "config.json").read_text()) for n in ("one", "all"))
    assert one_config == all_config
    ppl = {n: model_perplexity(out[n], [held_out_text], max_tokens=2048)["perplexity"] for n in out}
    print(ppl)
    noise = max(abs(ppl["one-seed-1"] - ppl["one"]), 0.01 * ppl["one"])
    assert abs(ppl["all"] - ppl["one"]) <= noise
