"""How the quantize job's hyperparameters are validated against the support table. Pure Python.

The table itself is contracts/support_table.py, the one the pipeline's input-validation Lambda
and the stage config read too, so every unit refuses the same inputs before any machine starts.
This module imports nothing outside the standard library and the contracts (no torch).

Every check returns *all* problems at once (a list of messages), because the Lambda reports
every bad field in one answer; the job joins them into its single failure reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.support_table import (
    ALGORITHMS,
    AUTO,
    DEFAULT_GROUP_SIZE,
    DEFAULT_IGNORE,
    KERNEL_GROUP_SIZES,
    NEEDS_CALIBRATION,
    RECIPES,
    REFUSALS,
    SCHEME_INFO,
    SCHEMES,
    SUPPORTED,
)

DEFAULTS: Mapping[str, Any] = {
    "algorithm": "gptq",
    "scheme": "W4A16",
    "group_size": DEFAULT_GROUP_SIZE,
    "num_calibration_samples": 128,
    "max_seq_length": 2048,
    "ignore": "",
    "seed": 0,
    # docs/quantize.md "Automatic recipe": fixed (the algorithm asked for) or auto (searched).
    "recipe": "fixed",
    # The automatic recipe's time budget: no candidate starts that would end after it.
    "search_budget_seconds": 3600,
    # Comma-separated candidate names the search may try (empty: every candidate for the scheme).
    "search_candidates": "",
}
MAX_CALIBRATION_SAMPLES = 100_000
MAX_SEQ_LENGTH = 131_072


def pair_problem(algorithm: str, scheme: str) -> str | None:
    """None when the pair is supported, else one sentence that says what to use instead."""
    if (algorithm, scheme) in SUPPORTED:
        return None
    reason = REFUSALS.get((algorithm, scheme), "this combination is not in the support table")
    return f"algorithm {algorithm} does not support scheme {scheme}: {reason}"


def support_table_markdown() -> str:
    """The support table as Markdown (docs/quantize.md embeds it; a test keeps them equal)."""
    header = "| algorithm | " + " | ".join(SCHEMES) + " |"
    rule = "| --- |" + " --- |" * len(SCHEMES)
    rows = [
        f"| {algo} | " + " | ".join("yes" if (algo, s) in SUPPORTED else "no" for s in SCHEMES) + " |"
        for algo in ALGORITHMS
    ]
    return "\n".join([header, rule, *rows])


@dataclass(frozen=True)
class Hyperparameters:
    algorithm: str
    scheme: str
    group_size: int
    num_calibration_samples: int
    max_seq_length: int
    ignore: tuple[str, ...]
    seed: int
    recipe: str = "fixed"
    search_budget_seconds: int = 3600
    search_candidates: tuple[str, ...] = ()

    @property
    def needs_calibration(self) -> bool:
        # The automatic recipe scores its candidates on held-out calibration text, even for
        # schemes whose algorithms are data-free.
        return self.algorithm in NEEDS_CALIBRATION or self.recipe == AUTO

    @property
    def grouped(self) -> bool:
        return SCHEME_INFO[self.scheme].grouped


def _as_int(name: str, value: Any, low: int, high: int, problems: list[str]) -> int:
    """SageMaker passes every hyperparameter as a string; accept "64" and 64, refuse "64.5"."""
    if isinstance(value, bool):
        problems.append(f"{name} must be an integer, got {value!r}")
        return 0
    try:
        number = int(str(value).strip())
    except ValueError:
        problems.append(f"{name} must be an integer, got {value!r}")
        return 0
    if not low <= number <= high:
        problems.append(f"{name} must be between {low} and {high}, got {number}")
    return number


def parse_ignore(value: Any) -> tuple[str, ...]:
    """``--ignore`` is a comma-separated list (SageMaker has no list type); a JSON list also works."""
    items = [str(v) for v in value] if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(item.strip() for item in items if item.strip())


def _with_defaults(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The defaults overlaid with ``raw`` (names with - or _), and a problem per unknown name."""
    values = dict(DEFAULTS)
    unknown = []
    for key, value in raw.items():
        name = key.lstrip("-").replace("-", "_")
        if name not in DEFAULTS:
            unknown.append(key)
            continue
        values[name] = value
    return values, [f"unknown hyperparameter {key!r} (known: {', '.join(sorted(DEFAULTS))})" for key in sorted(unknown)]


def _recipe(raw: Mapping[str, Any], values: Mapping[str, Any], problems: list[str]) -> str:
    recipe = str(values["recipe"]).strip().lower()
    if recipe not in RECIPES:
        problems.append(f"recipe must be one of {', '.join(RECIPES)}; got {values['recipe']!r}")
    given = {key.lstrip("-").replace("-", "_") for key in raw}
    if recipe == AUTO and "algorithm" in given and str(raw_value(raw, "algorithm")).strip().lower() != AUTO:
        problems.append("algorithm: leave it out with recipe auto (the search picks it; the manifest records it)")
    return recipe


def raw_value(raw: Mapping[str, Any], name: str) -> Any:
    """``raw``'s value for ``name``, whichever spelling (- or _, leading dashes) it uses."""
    return next(v for k, v in raw.items() if k.lstrip("-").replace("-", "_") == name)


def _algorithm_and_scheme(values: Mapping[str, Any], problems: list[str]) -> tuple[str, str]:
    algorithm = str(values["algorithm"]).strip().lower()
    if values["recipe"] == AUTO:
        scheme = str(values["scheme"]).strip().upper()
        if scheme not in SCHEMES:
            problems.append(f"scheme must be one of {', '.join(SCHEMES)}; got {values['scheme']!r}")
        return AUTO, scheme
    if algorithm not in ALGORITHMS:
        problems.append(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {values['algorithm']!r}")
    scheme = str(values["scheme"]).strip().upper()
    if scheme not in SCHEMES:
        problems.append(f"scheme must be one of {', '.join(SCHEMES)}; got {values['scheme']!r}")
    if algorithm in ALGORITHMS and scheme in SCHEMES and (problem := pair_problem(algorithm, scheme)):
        problems.append(problem)
    return algorithm, scheme


def _ignore_problems(ignore: Iterable[str]) -> list[str]:
    problems = []
    for pattern in ignore:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as exc:
                problems.append(f"ignore pattern {pattern!r} is not a valid regular expression: {exc}")
    return problems


def validate_hyperparameters(raw: Mapping[str, Any]) -> tuple[Hyperparameters | None, list[str]]:
    """Turn raw hyperparameters (names with - or _, values strings or numbers) into typed ones.

    Returns ``(hyperparameters, [])`` or ``(None, problems)`` with every problem found.
    """
    values, problems = _with_defaults(raw)
    values["recipe"] = _recipe(raw, values, problems)
    algorithm, scheme = _algorithm_and_scheme(values, problems)
    before = len(problems)
    group_size = _as_int("group_size", values["group_size"], 1, 1 << 20, problems)
    if len(problems) == before and group_size not in KERNEL_GROUP_SIZES:
        problems.append(
            f"group_size must be one of {', '.join(map(str, KERNEL_GROUP_SIZES))} (what vLLM's kernels accept); "
            f"got {group_size}"
        )
    samples = _as_int(
        "num_calibration_samples", values["num_calibration_samples"], 1, MAX_CALIBRATION_SAMPLES, problems
    )
    seq_len = _as_int("max_seq_length", values["max_seq_length"], 16, MAX_SEQ_LENGTH, problems)
    seed = _as_int("seed", values["seed"], 0, 2**32 - 1, problems)
    ignore = parse_ignore(values["ignore"])
    problems += _ignore_problems(ignore)
    budget = _as_int("search_budget_seconds", values["search_budget_seconds"], 1, 7 * 24 * 3600, problems)
    if problems:
        return None, problems
    return Hyperparameters(
        algorithm=algorithm,
        scheme=scheme,
        group_size=group_size,
        num_calibration_samples=samples,
        max_seq_length=seq_len,
        ignore=ignore,
        seed=seed,
        recipe=values["recipe"],
        search_budget_seconds=budget,
        search_candidates=parse_ignore(values["search_candidates"]),
    ), []


def matches(name: str, class_name: str, patterns: Iterable[str]) -> bool:
    """compressed-tensors' target syntax: ``re:<regex>`` matched from the start, else a module
    name or a class name compared exactly."""
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], name):
                return True
        elif pattern in (name, class_name):
            return True
    return False


@dataclass(frozen=True)
class LinearShape:
    name: str
    in_features: int
    out_features: int


@dataclass
class GroupResolution:
    """The effective group size and ignore list, and why they differ from what was asked."""

    requested: int | None
    effective: int | None
    ignore: list[str]
    changes: list[dict[str, Any]] = field(default_factory=list)
    quantized_layers: int = 0


def resolve_group_size(
    requested: int, layers: Iterable[LinearShape], *, ignore: Iterable[str], grouped: bool
) -> GroupResolution:
    """Apply the group-size rule: every quantized Linear needs ``in_features % group_size == 0``.

    One group size serves the whole model (one config group, one kernel configuration): the
    largest of ``KERNEL_GROUP_SIZES`` not above the requested one that divides every targeted
    layer that any of them divides. A layer no supported group size divides is added to
    ``ignore`` (kept in the source dtype). Each change is recorded with its reason.
    """
    ignore_list = list(dict.fromkeys([*DEFAULT_IGNORE, *ignore]))
    targeted = [layer for layer in layers if not matches(layer.name, "Linear", ignore_list)]
    if not grouped:
        return GroupResolution(requested=None, effective=None, ignore=ignore_list, quantized_layers=len(targeted))
    candidates = [g for g in KERNEL_GROUP_SIZES if g <= requested]
    resolution = GroupResolution(requested=requested, effective=None, ignore=ignore_list)
    keep: list[LinearShape] = []
    for layer in targeted:
        if any(layer.in_features % g == 0 for g in candidates):
            keep.append(layer)
        else:
            resolution.ignore.append(layer.name)
            resolution.changes.append(
                {
                    "layer": layer.name,
                    "action": "ignored",
                    "reason": f"in_features {layer.in_features} is not divisible by any supported group size "
                    f"<= {requested} ({', '.join(map(str, candidates))}); kept unquantized",
                }
            )
    effective = next((g for g in candidates if all(layer.in_features % g == 0 for layer in keep)), None)
    if effective is None:
        # Unreachable while candidates are powers of two: every kept layer is divisible by the
        # smallest candidate. Kept as a guard for a future change of KERNEL_GROUP_SIZES.
        effective = math.gcd(*(layer.in_features for layer in keep)) if keep else requested
    if effective != requested:
        blockers = sorted({layer.in_features for layer in keep if layer.in_features % requested})
        resolution.changes.append(
            {
                "layer": "*",
                "action": "group_size_reduced",
                "from": requested,
                "to": effective,
                "reason": f"in_features {', '.join(map(str, blockers))} not divisible by {requested}",
            }
        )
    resolution.effective = effective
    resolution.quantized_layers = len(keep)
    return resolution
