"""Which vLLM kernel serves a scheme on a serving instance's GPU, and where that is too slow.

The validate function refuses a scheme the serving GPU cannot run fast (unless the run spec
accepts the slow path); the evaluate report names the kernel each variant is expected to use.

Sources: the GPU of each instance family (Amazon EC2 accelerated computing instance types);
compute capabilities (NVIDIA CUDA GPUs list); vLLM's quantization hardware table ("Supported
Hardware": Marlin on Ampere (8.0) and newer, INT8 W8A8 on Turing (7.5) and newer, FP8 W8A8 on
Ada (8.9) and Hopper (9.0)) and its FP8 page ("FP8 computation is supported on NVIDIA GPUs with
compute capability >= 8.9 ... FP8 models will run on compute capability >= 7.5 (Turing) as
weight-only W8A16, utilizing FP8 Marlin"). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: float


# Serving instance family -> its GPU. Families without one (CPU, Inferentia, Trainium) are absent:
# the serving image is LMI's CUDA container.
GPU_BY_FAMILY: Final = {
    "g4dn": Gpu("NVIDIA T4", 7.5),
    "g5": Gpu("NVIDIA A10G", 8.6),
    "g6": Gpu("NVIDIA L4", 8.9),
    "g6e": Gpu("NVIDIA L40S", 8.9),
    "p3": Gpu("NVIDIA V100", 7.0),
    "p4d": Gpu("NVIDIA A100", 8.0),
    "p4de": Gpu("NVIDIA A100", 8.0),
    "p5": Gpu("NVIDIA H100", 9.0),
    "p5e": Gpu("NVIDIA H200", 9.0),
    "p5en": Gpu("NVIDIA H200", 9.0),
}


@dataclass(frozen=True)
class KernelRule:
    """The fast kernel of a scheme and the compute capability it needs; below it, what vLLM does."""

    fast_kernel: str
    fast_from: float
    slow_path: str  # what happens below ``fast_from`` (empty: nothing runs)
    runs_from: float  # below this nothing serves the scheme
    slow_kernel: str = ""


# Marlin needs Ampere (8.0) in vLLM's hardware table; vLLM 0.32's MarlinLinearKernel reports a
# minimum capability of 7.5, so Turing is accepted and Volta (7.0) refused. W3A16 is absent:
# the table documents no kernel for it, so it is neither refused nor promised.
KERNEL_RULES: Final = {
    "W4A16": KernelRule("Marlin / Machete (int4 weights, 16-bit activations)", 7.5, "", 7.5),
    "W4A16_ASYM": KernelRule("Marlin / Machete (int4 weights with zero points)", 7.5, "", 7.5),
    "W8A16": KernelRule("Marlin (int8 weights, 16-bit activations)", 7.5, "", 7.5),
    "W8A8": KernelRule("CUTLASS int8 scaled GEMM (int8 weights and activations)", 7.5, "", 7.5),
    "FP8_DYNAMIC": KernelRule(
        "CUTLASS fp8 scaled GEMM (fp8 weights and activations)",
        8.9,
        "vLLM falls back to FP8 Marlin, weight-only: activations stay 16-bit, so the fp8 compute gain is lost "
        "(W8A8 int8 keeps quantized activations on this GPU)",
        7.5,
        "FP8 Marlin (weight-only fallback)",
    ),
}
UNQUANTIZED_KERNEL: Final = "dense 16-bit GEMM (cuBLAS)"
UNQUANTIZED_SCHEMES: Final = frozenset({"BF16", "FP16", "FP32"})


def min_compute_capability(scheme: str) -> float:
    """The lowest compute capability that serves ``scheme`` with its fast kernel (the evaluate
    report's "smallest instance that fits" keeps to it). Unquantized 16-bit models run from
    Volta (vLLM casts bf16 to fp16 there); a scheme without a rule from Turing, like the rest."""
    rule = KERNEL_RULES.get(scheme.upper())
    if rule is not None:
        return rule.fast_from
    return 7.0 if scheme.upper() in UNQUANTIZED_SCHEMES else 7.5


def family_of(instance_type: str) -> str:
    """``ml.g5.2xlarge`` -> ``g5``."""
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else instance_type


def serving_problem(scheme: str, instance_type: str, *, allow_slow: bool = False) -> str | None:
    """Why ``scheme`` should not serve on ``instance_type`` (None: its fast kernel runs there)."""
    gpu = GPU_BY_FAMILY.get(family_of(instance_type))
    if gpu is None:
        return f"{instance_type} has no NVIDIA GPU; the serving image (LMI with vLLM) needs CUDA"
    rule = KERNEL_RULES.get(scheme)
    if rule is None or gpu.compute_capability >= rule.fast_from:
        return None
    where = f"{instance_type} ({gpu.name}, compute capability {gpu.compute_capability})"
    if gpu.compute_capability < rule.runs_from or not rule.slow_path:
        return f"vLLM has no kernel for {scheme} on {where}; choose another scheme or a newer GPU"
    if allow_slow:
        return None
    return (
        f"{scheme} on {where} does not get its fast kernel ({rule.fast_kernel} needs {rule.fast_from}): "
        f"{rule.slow_path}. Choose a serving instance with a newer GPU or another scheme, or set "
        "allow_slow_serving_kernel: true to serve it anyway"
    )


def expected_kernel(scheme: str, instance_type: str) -> str:
    """The kernel vLLM is expected to pick for ``scheme`` on ``instance_type``'s GPU."""
    gpu = GPU_BY_FAMILY.get(family_of(instance_type))
    if gpu is None:
        return "none (no NVIDIA GPU)"
    if scheme in UNQUANTIZED_SCHEMES:
        return UNQUANTIZED_KERNEL
    rule = KERNEL_RULES.get(scheme)
    if rule is None:
        return "not in vLLM's documented kernel table"
    if gpu.compute_capability >= rule.fast_from:
        return rule.fast_kernel
    if gpu.compute_capability >= rule.runs_from:
        return rule.slow_kernel
    return "none"
