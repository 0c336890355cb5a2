"""Candidate recipes of the automatic recipe search (docs/quantize.md "Automatic recipe").

A candidate is one llm-compressor recipe for the requested scheme: GPTQ with its activation
ordering and dampening variants, AWQ followed by GPTQ, AutoRound, SmoothQuant (at several
strengths) followed by GPTQ for W8A8, round-to-nearest, and the mixed-precision variant of the
best of those (its most sensitive layers kept at 8 bits or unquantized, jobs/quantize/sensitivity.py).
Which candidates exist for a scheme follows the support table (contracts/support_table.py):
AWQ only for weight-only schemes, SmoothQuant only for W8A8, GPTQ not for FP8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from contracts.support_table import SCHEME_INFO, SUPPORTED
from jobs.quantize.support import GroupResolution

# llm-compressor's defaults, named: GPTQ's dampening fraction and column order, AutoRound's
# tuning steps per decoder layer, and the SmoothQuant strength of its W8A8 examples.
GPTQ_DAMPENING = 0.01
GPTQ_ACTORDER = "static"
AUTOROUND_ITERS = 200
AUTOROUND_BATCH = 8
SMOOTHQUANT_STRENGTH = 0.8  # llm-compressor's W8A8 examples; 0.5 is the paper's default for OPT
MIXED = "mixed-precision"
# What a layer kept out of a weight-only scheme is quantized to instead (8-bit weights, same
# group size); layers kept out of an 8-bit scheme stay unquantized.
HIGH_PRECISION_SCHEME = "W8A16"


@dataclass(frozen=True)
class Candidate:
    """One recipe the search may try. ``cost`` is its expected time relative to one GPTQ run
    (docs/benchmarks.md: rtn 0.1, smoothquant-gptq 1.4 on CPU; AWQ then GPTQ 4.3 on an H200 and
    5.5 on CPU; AutoRound 12 on an H200, 39 on CPU); the unit is measured as soon as one
    calibrating candidate has run."""

    name: str
    algorithm: str  # rtn, gptq, awq+gptq, smoothquant-gptq, autoround
    cost: float
    actorder: str | None = GPTQ_ACTORDER
    dampening: float = GPTQ_DAMPENING
    smoothing_strength: float | None = None
    autoround_iters: int = 0
    # The mixed-precision candidate: the Linear layers kept at higher precision, and the
    # candidate it was derived from.
    high_precision: tuple[str, ...] = field(default=())
    base: str | None = None

    def settings(self) -> dict[str, Any]:
        """The manifest's description of the recipe (only what applies to its algorithm)."""
        values = asdict(self)
        values.pop("name")
        values.pop("cost")
        values["high_precision"] = len(self.high_precision)
        if "gptq" not in self.algorithm:
            values.pop("actorder")
            values.pop("dampening")
        if self.smoothing_strength is None:
            values.pop("smoothing_strength")
        if not self.autoround_iters:
            values.pop("autoround_iters")
        if self.base is None:
            values.pop("base")
        return values


def _gptq(name: str, **options: Any) -> Candidate:
    return Candidate(name=name, algorithm="gptq", cost=1.0, **options)


def candidates_for(scheme: str) -> list[Candidate]:
    """Every candidate for ``scheme``, most promising first (the budget may stop the list early;
    the mixed-precision candidate is not here: it is derived from the best, ``mixed``)."""
    pairs = {algorithm for algorithm, s in SUPPORTED if s == scheme}
    if "gptq" not in pairs:
        return [Candidate(name="rtn", algorithm="rtn", cost=0.1)]  # FP8: nothing to correct
    if "smoothquant-gptq" in pairs:  # W8A8
        smooth = [
            Candidate(name=f"smoothquant-{s}-gptq", algorithm="smoothquant-gptq", cost=1.4, smoothing_strength=s)
            for s in (SMOOTHQUANT_STRENGTH, 0.5, 0.9)
        ]
        return [Candidate(name="rtn", algorithm="rtn", cost=0.1), smooth[0], _gptq("gptq"), *smooth[1:]]
    found = [_gptq("gptq")]
    if "awq" in pairs:  # cheaper than AutoRound; on SmolLM2-135M W4A16 it beat GPTQ alone (+6.9 % vs +8.9 %)
        found.append(Candidate(name="awq-gptq", algorithm="awq+gptq", cost=4.5))
    found.append(Candidate(name="autoround", algorithm="autoround", cost=12.0, autoround_iters=AUTOROUND_ITERS))
    # llm-compressor 0.14's GPTQ takes actorder "static" (alias "weight") or none; "group" is refused.
    return [*found, _gptq("gptq-no-actorder", actorder=None), _gptq("gptq-dampening-0.1", dampening=0.1)]


def mixed(best: Candidate, layers: tuple[str, ...]) -> Candidate:
    """``best`` with ``layers`` kept at higher precision (costs the sensitivity pass too)."""
    return replace(best, name=MIXED, high_precision=layers, cost=best.cost * 1.1, base=best.name)


def high_precision_scheme(scheme: str) -> str | None:
    """The scheme a sensitive layer gets instead of ``scheme`` (None: left unquantized)."""
    return HIGH_PRECISION_SCHEME if SCHEME_INFO[scheme].weight_bits < 8 else None


def quant_args(scheme_name: str, resolution: GroupResolution, high_precision: tuple[str, ...] = ()) -> dict[str, Any]:
    """config_groups and ignore of a quantization modifier: the scheme on every Linear, and the
    ``high_precision`` layers (exact names, which compressed-tensors matches before the class
    name) at 8 bits or, for 8-bit schemes, in ignore."""
    from compressed_tensors.quantization import preset_name_to_scheme  # noqa: PLC0415

    scheme = preset_name_to_scheme(scheme_name, ["Linear"])
    if resolution.effective is not None:
        scheme.weights.group_size = resolution.effective
    groups: dict[str, Any] = {"group_0": scheme}
    ignore = list(resolution.ignore)
    higher = high_precision_scheme(scheme_name)
    if high_precision and higher is not None:
        kept = preset_name_to_scheme(higher, list(high_precision))
        kept.weights.group_size = resolution.effective or kept.weights.group_size
        groups["group_1"] = kept
    elif high_precision:
        ignore += list(high_precision)
    return {"config_groups": groups, "ignore": ignore}


def modifiers(candidate: Candidate, scheme: str, resolution: GroupResolution) -> list[Any]:
    """The llm-compressor modifiers of ``candidate``."""
    from llmcompressor.modifiers.gptq import GPTQModifier  # noqa: PLC0415
    from llmcompressor.modifiers.quantization import QuantizationModifier  # noqa: PLC0415
    from llmcompressor.modifiers.transform.awq import AWQModifier  # noqa: PLC0415
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier  # noqa: PLC0415

    from jobs.quantize.autoround_fixes import FixedAutoRoundModifier  # noqa: PLC0415

    args = quant_args(scheme, resolution, candidate.high_precision)
    if candidate.algorithm == "rtn":
        return [QuantizationModifier(**args)]
    if candidate.algorithm == "autoround":
        # torch.compile needs a C compiler (CPU) or Triton (GPU) in the image and compiles once
        # per layer shape; the search keeps it off rather than depend on either.
        return [
            FixedAutoRoundModifier(
                **args,
                iters=candidate.autoround_iters,
                batch_size=AUTOROUND_BATCH,
                enable_torch_compile=False,
            )
        ]
    gptq = GPTQModifier(**args, actorder=candidate.actorder, dampening_frac=candidate.dampening)
    if candidate.algorithm == "awq+gptq":
        return [AWQModifier(), gptq]
    if candidate.smoothing_strength is not None:
        return [SmoothQuantModifier(smoothing_strength=candidate.smoothing_strength), gptq]
    return [gptq]
