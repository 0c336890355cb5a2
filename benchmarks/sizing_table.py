"""Print the quantize sizing table (docs/quantize-sizing.md) from the rule in
lambda/validate_input/quantize_sizing.py, so the docs never drift from the code."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambda" / "validate_input"))

from quantize_sizing import PRICES_AS_OF, cheapest_fitting, estimate

MODELS = ((8.03, "8B"), (70.6, "70B"), (405.9, "405B"))


def main() -> None:
    print("| model | algorithm | host RAM GiB | GPU GiB (one GPU) | disk GiB | cheapest instance | hours | USD |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for params, label in MODELS:
        for algorithm, samples in (("gptq", 128), ("awq", 128), ("awq", 32)):
            needs = estimate(params, algorithm, samples=samples)
            best = cheapest_fitting(needs)
            where = best.name if best else "none (lower the calibration tokens)"
            hours = f"{needs.hours_on(best):.2f}" if best else "-"
            cost = f"{needs.cost_on(best):.1f}" if best else "-"
            print(
                f"| {label} | {algorithm} ({samples} x 2048) | {needs.host_memory_gib:g} | {needs.gpu_memory_gib:g} "
                f"| {needs.disk_gib} | {where} | {hours} | {cost} |"
            )
    print(f"\nPrices: {PRICES_AS_OF}.")


if __name__ == "__main__":
    main()
