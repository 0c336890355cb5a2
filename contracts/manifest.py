"""The quantize job's manifest.json: what the record step (and people) rely on it to say.

The job writes much more (timings, hardware, per-layer changes); these fields are the
contract. The job checks its own manifest against them before it publishes the artifact,
the record function before it registers a model package.
"""

from __future__ import annotations

from typing import Any, Final

SCHEMA_VERSION: Final = 1
REQUIRED_FIELDS: Final = (
    "quantization.algorithm",
    "quantization.scheme",
    "quantization.group_size",
    "quantization.ignore",
    "calibration.sha256",
    "calibration.samples_used",
    "source.sha256",
    "versions",
    "metrics.wall_seconds",
    "metrics.source_bytes",
    "metrics.artifact_bytes",
)

# Optional (older manifests lack it): the calibration prompts' profile (contracts/prompt_drift.py
# PromptProfile.to_json), what the input-drift function compares captured traffic with. Null for
# data-free algorithms, which read no calibration set.
CALIBRATION_PROFILE_FIELD: Final = "calibration.profile"


def lookup(data: Any, dotted: str) -> tuple[bool, Any]:
    """(found, value) of a dotted field."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def missing_fields(manifest: Any) -> list[str]:
    """The contract's fields ``manifest`` lacks, in the contract's order."""
    return [field for field in REQUIRED_FIELDS if not lookup(manifest, field)[0]]
