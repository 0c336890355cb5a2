"""Print the quantize sizing table (docs/quantize-sizing.md) from the rule in
lambda/validate_input/quantize_sizing.py, so the docs never drift from the code.

``--gpus 1`` prints the fitted one-GPU rule alone (every instance judged as if the job used one
GPU, as before the job ran one rank per GPU); the default judges each instance with one rank per
GPU, as the job runs now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script: the function's folder and the repository root (contracts) on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambda" / "validate_input"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantize_sizing import H200_BF16_TFLOPS, PRICES_AS_OF, TRAINING_INSTANCES, Needs, TrainingInstance, estimate

MODELS = ((8.03, "8B"), (70.6, "70B"), (405.9, "405B"))
CALIBRATIONS = (("gptq", 128), ("awq", 128), ("awq", 32))


def cheapest(needs: Needs, one_gpu: bool) -> TrainingInstance | None:
    if not one_gpu:
        fitting = [i for i in TRAINING_INSTANCES if needs.fits(i)]
        return min(fitting, key=needs.cost_on) if fitting else None
    fitting = [i for i in TRAINING_INSTANCES if i.host_memory_gib >= needs.host_memory_gib]
    fitting = [i for i in fitting if i.gpu_memory_gib >= needs.gpu_memory_gib]

    def cost(i: TrainingInstance) -> float:
        return (needs.h200_seconds * H200_BF16_TFLOPS / i.gpu_bf16_tflops / 3600 + 5 / 60) * i.usd_per_hour

    return min(fitting, key=cost) if fitting else None


def row(params: float, label: str, algorithm: str, samples: int, one_gpu: bool) -> str:
    needs = estimate(params, algorithm, samples=samples)
    best = cheapest(needs, one_gpu)
    there = needs if best is None or one_gpu else needs.on(best)
    where = best.name if best else "none (lower the calibration tokens)"
    hours = there.h200_seconds * H200_BF16_TFLOPS / best.gpu_bf16_tflops / 3600 if best else None
    return (
        f"| {label} | {algorithm} ({samples} x 2048) | {needs.host_memory_gib:g} / {needs.gpu_memory_gib:g} "
        f"| {where} | {there.ranks if best else '-'} | {there.host_memory_gib:g} | {there.gpu_memory_gib:g} "
        f"| {needs.disk_gib} | {f'{hours:.2f}' if hours is not None else '-'} "
        f"| {f'{(hours + 5 / 60) * best.usd_per_hour:.1f}' if best and hours is not None else '-'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", choices=["1", "all"], default="all", help="1: the old one-GPU judgement")
    args = parser.parse_args()
    print(
        "| model | algorithm | 1 GPU: host / GPU GiB | cheapest instance | ranks | host RAM GiB | GPU GiB per GPU "
        "| disk GiB | hours | USD |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for params, label in MODELS:
        for algorithm, samples in CALIBRATIONS:
            print(row(params, label, algorithm, samples, one_gpu=args.gpus == "1"))
    print(f"\nPrices: {PRICES_AS_OF}.")


if __name__ == "__main__":
    main()
