"""The inference AMI an endpoint variant needs to run the serving image's CUDA.

A real-time GPU endpoint without ``InferenceAmiVersion`` gets SageMaker's
default host (NVIDIA driver 470 / CUDA 11.4 on ml.g5, for example); the LMI
image built for CUDA 13 (``...-cu130``) does not start on it. The image tag
says which CUDA it was built for, so the AMI is derived from the image URI (a
run may override the image) rather than named a second time in the config.
Driver and CUDA per AMI: https://docs.aws.amazon.com/sagemaker/latest/dg/inference-ami-versions.html
(docs/aws-behaviour.md); the names are the enum of ProductionVariant.InferenceAmiVersion.
"""

from __future__ import annotations

import re

# CUDA major version of the image -> the AMI whose NVIDIA driver runs it (the oldest
# such AMI: later minor releases of the same major run on its driver).
AMI_FOR_CUDA_MAJOR = {
    13: "al2023-ami-sagemaker-inference-gpu-4-1",  # driver 580, CUDA 13.0
    12: "al2-ami-sagemaker-inference-gpu-3-1",  # driver 550, CUDA 12.4
    11: "al2-ami-sagemaker-inference-gpu-2",  # driver 535, CUDA 12.2 (runs CUDA 11 images)
}
# Instance families whose accelerators are not NVIDIA GPUs: no GPU AMI applies.
NON_NVIDIA_FAMILIES = ("inf", "trn")
CPU_FAMILIES = ("c", "m", "r", "t")
_CUDA_TAG = re.compile(r"[-_:]cu(?P<major>\d{2,3}?)(?P<minor>\d)(?:[-_.]|$)")


def cuda_major(image_uri: str) -> int | None:
    """CUDA major version from an image tag such as ``0.38.0-lmi29.0.0-cu130``; None when absent."""
    tag = image_uri.rsplit(":", 1)[-1] if ":" in image_uri.rsplit("/", 1)[-1] else ""
    match = _CUDA_TAG.search(f"-{tag}")
    return int(match["major"]) if match else None


def inference_ami(image_uri: str, instance_type: str) -> str | None:
    """The InferenceAmiVersion for a GPU variant of ``image_uri``; None for CPU/Neuron or an unknown CUDA.

    Raises ValueError for a CUDA major version no SageMaker inference AMI runs.
    """
    family = instance_type.split(".")[1] if instance_type.count(".") == 2 else ""
    if family.startswith(NON_NVIDIA_FAMILIES) or (family[:1] in CPU_FAMILIES and not family.startswith("g")):
        return None
    major = cuda_major(image_uri)
    if major is None:
        return None
    if major not in AMI_FOR_CUDA_MAJOR:
        known = ", ".join(str(m) for m in sorted(AMI_FOR_CUDA_MAJOR))
        raise ValueError(f"the serving image is built for CUDA {major}; SageMaker inference AMIs run CUDA {known}")
    return AMI_FOR_CUDA_MAJOR[major]
