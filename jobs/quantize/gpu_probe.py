"""The instance: a GPU host whose torch sees no CUDA must not quantize on the CPU for hours."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobs.sagemaker_job.failure import JobFailureError

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
