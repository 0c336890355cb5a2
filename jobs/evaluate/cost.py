"""Cost figures: price table, cost per 1M output tokens, and the smallest instance that fits.

Two sources of savings are kept apart on purpose:
- throughput: the same instance serving more tokens per hour makes each token cheaper
  (``cost_per_million_tokens`` of the measured rate);
- memory: smaller weights leave room for the KV cache on a smaller, cheaper accelerator
  (``smallest_fitting_instance``); for 7B+ models this is usually the larger effect.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.serving_hardware import min_compute_capability
from jobs.evaluate.stats import cost_per_million_tokens, round_or_none

PRICE_TABLE = Path(__file__).with_name("instance_prices.json")
GIB = 1024**3
# vLLM's default gpu_memory_utilization: the share of accelerator memory it plans with.
GPU_MEMORY_UTILIZATION = 0.9
# CUDA context, activations and sampler buffers beside weights and KV cache.
RUNTIME_OVERHEAD_BYTES = 1 * GIB
KV_CACHE_DTYPE_BYTES = 2  # fp16/bf16 KV cache, vLLM's default


class PriceTableError(ValueError):
    """The price table is unreadable or lacks an instance type that was asked for."""


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    source: str
    region: str
    price_kind: str
    instances: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: Path = PRICE_TABLE) -> PriceTable:
        try:
            data = json.loads(Path(path).read_text())
            return cls(
                as_of=str(data["as_of"]),
                source=str(data["source"]),
                region=str(data["region"]),
                price_kind=str(data["price_kind"]),
                instances=dict(data["instances"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PriceTableError(f"cannot read the instance price table {path}: {exc}") from exc

    def price(self, instance_type: str) -> float:
        if instance_type not in self.instances:
            known = ", ".join(sorted(self.instances))
            raise PriceTableError(f"instance type {instance_type!r} is not in the price table (known: {known})")
        return float(self.instances[instance_type]["usd_per_hour"])

    def header(self) -> dict[str, str]:
        return {"as_of": self.as_of, "source": self.source, "region": self.region, "price_kind": self.price_kind}


def kv_cache_bytes_per_token(config: dict[str, Any]) -> int:
    """Bytes of K and V one token occupies across all layers, from an HF ``config.json``."""
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    return 2 * layers * kv_heads * head_dim * KV_CACHE_DTYPE_BYTES


def required_accelerator_bytes(weight_bytes: int, config: dict[str, Any], concurrency: int, context_tokens: int) -> int:
    """Weights + KV cache for ``concurrency`` sequences of ``context_tokens`` + runtime overhead."""
    kv = kv_cache_bytes_per_token(config) * concurrency * context_tokens
    return int(weight_bytes + kv + RUNTIME_OVERHEAD_BYTES)


def smallest_fitting_instance(
    table: PriceTable,
    *,
    scheme: str,
    weight_bytes: int,
    config: dict[str, Any],
    concurrency: int,
    context_tokens: int,
) -> dict[str, Any]:
    """Cheapest accelerator instance whose usable memory holds the model at the workload.

    "Usable" is vLLM's planning share (90 %) of the accelerator memory; the instance must also
    have a kernel for the scheme (compute capability). CPU instances are left out: the
    SageMaker serving image is vLLM/LMI on GPUs.
    """
    need = required_accelerator_bytes(weight_bytes, config, concurrency, context_tokens)
    min_cc = min_compute_capability(scheme)
    fitting = []
    for name, spec in table.instances.items():
        if not spec.get("accelerators"):
            continue
        usable = float(spec["accelerator_memory_gib"]) * GIB * GPU_MEMORY_UTILIZATION
        if usable >= need and float(spec.get("compute_capability") or 0) >= min_cc:
            fitting.append((float(spec["usd_per_hour"]), name, spec))
    result: dict[str, Any] = {
        "required_bytes": need,
        "required_gib": round(need / GIB, 3),
        "assumptions": {
            "concurrency": concurrency,
            "context_tokens": context_tokens,
            "kv_cache_bytes_per_token": kv_cache_bytes_per_token(config),
            "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
            "runtime_overhead_bytes": RUNTIME_OVERHEAD_BYTES,
            "min_compute_capability": min_cc,
        },
    }
    if not fitting:
        result.update({"instance_type": None, "usd_per_hour": None, "reason": "no instance in the table fits"})
        return result
    price, name, spec = min(fitting, key=lambda item: (item[0], item[1]))
    result.update(
        {
            "instance_type": name,
            "usd_per_hour": price,
            "accelerator": spec.get("accelerator"),
            "accelerator_memory_gib": spec.get("accelerator_memory_gib"),
        }
    )
    return result


def cost_section(
    table: PriceTable,
    *,
    measured_instance_type: str,
    measured_note: str,
    throughput_by_variant: dict[str, dict[int, float]],
    fits: dict[str, dict[str, Any]],
    workload_concurrency: int,
) -> dict[str, Any]:
    """report.json's ``cost``: per variant and concurrency, plus the savings at the workload."""
    hourly = table.price(measured_instance_type)
    per_variant: dict[str, Any] = {}
    at_workload: dict[str, float | None] = {}
    for variant, levels in throughput_by_variant.items():
        per_conc = {str(c): round_or_none(cost_per_million_tokens(hourly, tps), 4) for c, tps in sorted(levels.items())}
        per_variant[variant] = {"usd_per_1m_output_tokens": per_conc, "smallest_instance": fits.get(variant)}
        tps = levels.get(workload_concurrency)
        at_workload[variant] = round_or_none(cost_per_million_tokens(hourly, tps), 4) if tps is not None else None
    for variant, fit in fits.items():
        per_variant.setdefault(variant, {"usd_per_1m_output_tokens": {}, "smallest_instance": fit})
    base, cand = at_workload.get("baseline"), at_workload.get("candidate")
    savings = None
    if base and cand is not None and not math.isinf(base):
        savings = round((1 - cand / base) * 100, 2)
    base_fit = (fits.get("baseline") or {}).get("usd_per_hour")
    cand_fit = (fits.get("candidate") or {}).get("usd_per_hour")
    return {
        "price_table": table.header(),
        "measured_on": {"instance_type": measured_instance_type, "usd_per_hour": hourly, "note": measured_note},
        "workload_concurrency": workload_concurrency,
        "usd_per_1m_output_tokens": at_workload,
        "savings_pct_at_workload": savings,
        "smallest_instance_usd_per_hour": {"baseline": base_fit, "candidate": cand_fit},
        "per_variant": per_variant,
    }
