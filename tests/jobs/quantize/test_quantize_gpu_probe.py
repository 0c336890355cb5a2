"""A GPU instance whose torch sees no CUDA is refused at once, with the reason in the failure file.

The signs of a GPU host are simulated on this CPU machine: a /dev directory holding nvidia0
(``LLMQ_DEV_DIR``), SageMaker's resourceconfig.json naming a GPU instance type
(``SM_INPUT_CONFIG_DIR``) and an nvidia-smi that lists a GPU (``LLMQ_NVIDIA_SMI``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from jobs.quantize.gpu_probe import GpuProbe

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a torch without CUDA")

A10G_LISTING = "GPU 0: NVIDIA A10G (UUID: GPU-2b9a5d8e-0000-0000-0000-000000000000)"


def fake_nvidia_smi(directory: Path, listing: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = --list-gpus ] && printf '%s\\n' '{listing}'\n")
    script.chmod(0o755)
    return script


def dev_with_gpu(tmp_path: Path) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidia0").touch()
    (dev / "nvidiactl").touch()
    return dev


def resource_config(config_dir: Path, instance_type: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "current_instance_type": instance_type, "hosts": ["algo-1"]})
    )


def test_gpu_device_without_cuda_fails_before_anything_is_loaded(run_job, tmp_path):
    """The model channel does not even exist: the GPU refusal comes first, in seconds."""
    started = time.monotonic()
    result = run_job(tmp_path / "no-model", "--algorithm", "rtn", env={"LLMQ_DEV_DIR": str(dev_with_gpu(tmp_path))})
    assert result.code == 1
    reason = result.failure or ""
    assert reason.count("\n") == 1, reason
    for fragment in ("NVIDIA GPUs", "nvidia0 exists", "sees no CUDA device", "CPU-only build", "refusing"):
        assert fragment in reason, reason
    assert time.monotonic() - started < 60
    assert not result.output.exists(), "nothing may be written on a refusal"


def test_gpu_instance_type_in_the_resource_config_is_refused(run_job, tiny_model_dir, tmp_path):
    resource_config(tmp_path / "config", "ml.g5.4xlarge")
    result = run_job(tiny_model_dir, "--algorithm", "rtn")
    assert result.code == 1
    assert "the instance type is ml.g5.4xlarge" in (result.failure or "")
    assert not result.finished_artifact_exists()


def test_nvidia_smi_listing_a_gpu_is_refused(run_job, tiny_model_dir, tmp_path):
    smi = fake_nvidia_smi(tmp_path / "bin", A10G_LISTING)
    result = run_job(tiny_model_dir, "--algorithm", "rtn", env={"LLMQ_NVIDIA_SMI": str(smi)})
    assert result.code == 1
    assert "nvidia-smi lists 1 GPU(s)" in (result.failure or "")


def test_cpu_instance_quantizes_on_the_cpu(run_job, tiny_model_dir, tmp_path):
    """No GPU sign (a CPU instance type, no device, nvidia-smi listing nothing): the job runs."""
    resource_config(tmp_path / "config", "ml.m5.4xlarge")
    smi = fake_nvidia_smi(tmp_path / "bin", "")
    result = run_job(tiny_model_dir, "--algorithm", "rtn", "--scheme", "W8A16", env={"LLMQ_NVIDIA_SMI": str(smi)})
    assert result.code == 0, result.failure
    assert result.manifest["hardware"]["device"] == "cpu"


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [
        ("ml.g5.4xlarge", True),
        ("ml.g6e.12xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.m5.xlarge", False),
        ("ml.c5.9xlarge", False),
        ("ml.trn1.32xlarge", False),
    ],
)
def test_gpu_instance_families(tmp_path, instance_type, gpu):
    resource_config(tmp_path / "config", instance_type)
    probe = GpuProbe.from_environment(
        {"SM_INPUT_CONFIG_DIR": str(tmp_path / "config"), "LLMQ_DEV_DIR": str(tmp_path), "LLMQ_NVIDIA_SMI": "absent"}
    )
    assert probe.instance_type() == instance_type
    assert bool(probe.evidence()) is gpu


def test_probe_defaults_are_sagemakers_locations():
    probe = GpuProbe.from_environment({})
    assert probe.dev_dir == Path("/dev")
    assert probe.resource_config == Path("/opt/ml/input/config/resourceconfig.json")
    assert probe.nvidia_smi == "nvidia-smi"


def test_unreadable_resource_config_is_no_evidence(tmp_path):
    (tmp_path / "resourceconfig.json").write_text("{not json")
    probe = GpuProbe(dev_dir=tmp_path / "none", resource_config=tmp_path / "resourceconfig.json", nvidia_smi="absent")
    assert probe.instance_type() is None
    assert probe.evidence() == []
