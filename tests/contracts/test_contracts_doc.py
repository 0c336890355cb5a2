"""docs/contracts.md is held to the contracts package: nothing defined there is missing here, and back."""

from __future__ import annotations

import re
from pathlib import Path

from contracts import (
    alarm_signals,
    artifact_layout,
    endpoint_tags,
    input_drift,
    live_quality,
    prompt_drift,
    review_rule,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()


def _constants(module: object, prefix: str) -> dict[str, str]:
    return {k: v for k, v in vars(module).items() if k.startswith(prefix) and isinstance(v, str)}


def test_every_endpoint_tag_and_phase_is_documented():
    for name, value in {**_constants(endpoint_tags, "TAG_"), **_constants(endpoint_tags, "PHASE_")}.items():
        assert f"`{value}`" in DOC, f"{name} = {value!r} is not in docs/contracts.md"


def test_every_endpoint_tag_the_doc_names_is_defined():
    table = DOC.split("## Endpoint tags", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(llmq:[a-z-]+)`", table, flags=re.MULTILINE))
    assert documented == set(_constants(endpoint_tags, "TAG_").values())


def test_every_alarm_signal_and_role_is_documented():
    for value in (*alarm_signals.SIGNALS, *alarm_signals.ROLES, alarm_signals.COMPOSITE_SUFFIX):
        assert f"`{value}`" in DOC or f"-{value}`" in DOC, value


def test_every_artifact_folder_and_file_is_documented():
    for value in (
        artifact_layout.MANIFEST_FILE,
        artifact_layout.REPORT_FILE,
        artifact_layout.GATE_FILE,
        artifact_layout.REVIEW_FILE,
        artifact_layout.REVIEW_PAGE_FILE,
        artifact_layout.REPORTS_DIR,
        artifact_layout.ROLLBACKS_DIR,
        artifact_layout.AUTOSCALING_DIR,
        artifact_layout.QUALITY_DIR,
        artifact_layout.CAPTURE_DIR,
    ):
        assert value in DOC, value


def test_every_live_quality_metric_is_documented_with_its_unit_and_dimensions():
    table = DOC.split("## Live quality metrics", 1)[1].split("\n## ", 1)[0]
    assert f"`{live_quality.NAMESPACE}`" in table
    for spec in live_quality.METRICS:
        assert f"| `{spec.name}` (unit `{spec.unit}`) |" in table, spec.name
    documented = set(re.findall(r"^\| `([A-Za-z]+)` \(unit", table, flags=re.MULTILINE))
    assert documented == {spec.name for spec in live_quality.METRICS}
    assert all(f"`{name}`" in table for name in live_quality.DIMENSIONS)


def test_the_input_drift_metrics_and_alarms_are_documented_as_defined():
    section = DOC.split("## Input drift", 1)[1].split("\n## ", 1)[0]
    for value in (input_drift.NAMESPACE, input_drift.ENDPOINT_DIMENSION, input_drift.UNIT, *input_drift.THRESHOLDS):
        assert f"`{value}`" in section, value
    for metric, threshold in input_drift.THRESHOLDS.items():
        assert f"`{input_drift.alarm_name('<endpoint>', metric)}`" in section
        assert f"{threshold:g}" in section
    assert f"{prompt_drift.MIN_PROMPTS} prompts" in section


def test_the_review_rule_is_documented_with_its_threshold():
    assert f"{review_rule.MAX_NET_BASELINE_PCT:g} %" in DOC.split("## Human review approval", 1)[1]
