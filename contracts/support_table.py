"""The support table: which algorithm quantizes which scheme, and the settings every unit agrees on.

The quantize job refuses what is not here, the validate function refuses the same
inputs before any machine starts, and the pilot does too. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

ALGORITHMS: tuple[str, ...] = ("awq", "gptq", "smoothquant-gptq", "rtn")
SCHEMES: tuple[str, ...] = ("W4A16", "W4A16_ASYM", "W8A16", "W8A8", "FP8_DYNAMIC", "W3A16")


@dataclass(frozen=True)
class SchemeInfo:
    """What a scheme quantizes, which decides the algorithms and settings that apply to it."""

    weight_bits: int
    weight_only: bool
    grouped: bool  # weights quantized per group of input columns (group-size rule applies)
    description: str


SCHEME_INFO: Mapping[str, SchemeInfo] = {
    "W4A16": SchemeInfo(4, True, True, "int4 weights, symmetric, per group; 16-bit activations"),
    "W4A16_ASYM": SchemeInfo(4, True, True, "int4 weights, asymmetric (zero point), per group; 16-bit activations"),
    "W8A16": SchemeInfo(8, True, True, "int8 weights per group; 16-bit activations"),
    "W8A8": SchemeInfo(8, False, False, "int8 weights per channel; int8 activations, dynamic per token"),
    "FP8_DYNAMIC": SchemeInfo(8, False, False, "fp8 (e4m3) weights per channel; fp8 activations, dynamic per token"),
    "W3A16": SchemeInfo(3, True, True, "int3 weights per group; 16-bit activations"),
}

# The support table. A pair absent from SUPPORTED is refused with the reason and the
# alternative in REFUSALS (every refused pair has one: tests check the table is complete).
SUPPORTED: frozenset[tuple[str, str]] = frozenset(
    {
        # AWQ rescales weight channels against activation statistics, then a weight quantizer
        # runs: it only makes sense when the activations stay in 16 bits.
        ("awq", "W4A16"),
        ("awq", "W4A16_ASYM"),
        ("awq", "W8A16"),
        ("awq", "W3A16"),
        # GPTQ corrects the rounding error of integer weights with second-order information.
        ("gptq", "W4A16"),
        ("gptq", "W4A16_ASYM"),
        ("gptq", "W8A16"),
        ("gptq", "W8A8"),
        ("gptq", "W3A16"),
        # SmoothQuant moves activation outliers into the weights so int8 activations survive.
        ("smoothquant-gptq", "W8A8"),
        # Round-to-nearest: every scheme here has static weights and dynamic (or no)
        # activation quantization, so it needs no calibration data at all.
        ("rtn", "W4A16"),
        ("rtn", "W4A16_ASYM"),
        ("rtn", "W8A16"),
        ("rtn", "W8A8"),
        ("rtn", "FP8_DYNAMIC"),
        ("rtn", "W3A16"),
    }
)

REFUSALS: Mapping[tuple[str, str], str] = {
    ("awq", "W8A8"): (
        "AWQ only protects weights and keeps activations in 16 bits; for W8A8 use smoothquant-gptq "
        "(or rtn for a data-free baseline)"
    ),
    ("awq", "FP8_DYNAMIC"): (
        "AWQ only applies to integer weight-only schemes; FP8_DYNAMIC needs no calibration: use rtn"
    ),
    ("gptq", "FP8_DYNAMIC"): (
        "FP8_DYNAMIC keeps enough precision that GPTQ's error correction adds nothing; use rtn (data-free)"
    ),
    ("smoothquant-gptq", "W4A16"): (
        "SmoothQuant only helps when activations are quantized (W8A8); for W4A16 use awq or gptq"
    ),
    ("smoothquant-gptq", "W4A16_ASYM"): (
        "SmoothQuant only helps when activations are quantized (W8A8); for W4A16_ASYM use awq or gptq"
    ),
    ("smoothquant-gptq", "W8A16"): (
        "SmoothQuant only helps when activations are quantized (W8A8); for W8A16 use gptq or rtn"
    ),
    ("smoothquant-gptq", "W3A16"): (
        "SmoothQuant only helps when activations are quantized (W8A8); for W3A16 use awq or gptq"
    ),
    ("smoothquant-gptq", "FP8_DYNAMIC"): (
        "SmoothQuant is for int8 activations; FP8_DYNAMIC needs no calibration: use rtn"
    ),
}

# Algorithms that read calibration data (rtn never does with the schemes above).
NEEDS_CALIBRATION: frozenset[str] = frozenset({"awq", "gptq", "smoothquant-gptq"})

# Group sizes that vLLM's GPU weight-only kernels (Marlin, Machete) accept; the resolver only
# falls back to these, so whatever the job writes also serves.
KERNEL_GROUP_SIZES: tuple[int, ...] = (128, 64, 32)
DEFAULT_GROUP_SIZE = 128
# Sources up to this many parameters are calibrated in float32 on a GPU too (as on every CPU):
# GPTQ W4A16_ASYM on SmolLM2-135M, one H200, validation perplexity +8.9 % calibrated in float32
# against +10.4 % in bf16 (docs/benchmarks.md "W4A16 variants"). Larger ones calibrate in their
# source dtype: the float32 copy would double host memory (the sizing rule counts either).
FLOAT32_CALIBRATION_MAX_PARAMETERS: Final = 1_000_000_000
# Never quantized: the output projection is the most sensitive layer, and vLLM keeps it dense.
DEFAULT_IGNORE: tuple[str, ...] = ("lm_head",)

# Instance families the project knows (the stage config and the validate function refuse others).
KNOWN_INSTANCE_FAMILIES: Final = frozenset(
    {
        "c5", "c6i", "c7i", "m5", "m6i", "m7i", "r5", "r6i", "r7i",
        "g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5", "p5e", "p5en",
        "inf2", "trn1",
    }
)  # fmt: skip
# Schemes whose weights are quantized per group of input columns (the group-size rule applies).
GROUPED_SCHEMES: Final = frozenset(s for s, info in SCHEME_INFO.items() if info.grouped)
# algorithm -> the schemes it quantizes.
SCHEMES_BY_ALGORITHM: Final = {a: frozenset(s for alg, s in SUPPORTED if alg == a) for a in ALGORITHMS}

# How the recipe is chosen: "fixed" runs the algorithm asked for; "auto" searches candidate
# recipes for the scheme within a time budget and keeps the best on held-out calibration text
# (jobs/quantize/search.py, docs/quantize.md "Automatic recipe"). With "auto" the algorithm is
# the search's to choose: run plans and manifests then name the algorithm AUTO.
RECIPES: Final = ("fixed", "auto")
AUTO: Final = "auto"
# The algorithm the sizing rule assumes for an automatic recipe: the most demanding one the
# search may run for the scheme (AWQ caches activations; GPTQ and SmoothQuant hold Hessians).
_SIZING_ORDER: Final = ("awq", "smoothquant-gptq", "gptq", "rtn")


def sizing_algorithm(scheme: str) -> str:
    """The algorithm whose needs bound an automatic recipe's for ``scheme`` (rtn if none calibrates)."""
    return next((a for a in _SIZING_ORDER if (a, scheme) in SUPPORTED), "rtn")
