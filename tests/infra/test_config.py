"""The stage config: valid stages load, invalid ones stop synth naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import ConfigError, StageConfig, instance_family, load_stage_config
from tests.infra.conftest import ROOT, cdk_context


def test_every_stage_in_cdk_json_loads():
    context = cdk_context()
    for stage in context["stages"]:
        config = load_stage_config(context, stage)
        assert config.stage == stage
        assert not config.allow_nat_egress, "shipped stages keep egress off"


def test_config_is_frozen():
    config = load_stage_config(cdk_context(), "dev")
    with pytest.raises(ValueError):
        config.max_azs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "field", "needle"),
    [
        ({"vpc_cidr": "10.0.0.0/33"}, "vpc_cidr", "not an IPv4 CIDR"),
        ({"vpc_cidr": "10.0.0.1/16"}, "vpc_cidr", "not an IPv4 CIDR"),
        ({"vpc_cidr": "8.8.0.0/16"}, "vpc_cidr", "private"),
        ({"vpc_cidr": "10.0.0.0/8"}, "vpc_cidr", "/16 and /24"),
        ({"max_azs": 0}, "max_azs", "greater than or equal to 1"),
        ({"max_azs": 7}, "max_azs", "less than or equal to 4"),
        ({"instances": {"quantize": "ml.g5x.2xlarge"}}, "instances.quantize", "unknown instance family 'g5x'"),
        ({"instances": {"serving": "g5.2xlarge"}}, "instances.serving", "ml.<family>.<size>"),
        ({"log_retention_days": 10}, "log_retention_days", "retention"),
        ({"removal_policy": "keep"}, "removal_policy", "retain"),
        ({"account": "12345"}, "account", "12-digit"),
        ({"region": "mars-1"}, "region", "region"),
        ({"vpc_cird": "10.0.0.0/16"}, "vpc_cird", "Extra inputs"),
        ({"monitored_endpoints": ["other-chat"]}, "monitored_endpoints", "'other-chat' must start with 'llmq-dev-'"),
        ({"monitored_endpoints": ["bad_name!"]}, "monitored_endpoints", "not a valid SageMaker endpoint name"),
        # DataCaptureConfig.InitialSamplingPercentage: 0-100 (docs/aws-behaviour.md).
        ({"data_capture": {"sampling_percentage": 101}}, "data_capture.sampling_percentage", "less than or equal"),
        ({"data_capture": {"sampling_percentage": -1}}, "data_capture.sampling_percentage", "greater than or equal"),
        ({"data_capture": {"drift_check_hours": 0}}, "data_capture.drift_check_hours", "greater than or equal"),
        ({"pipeline": {"require_human_review": "maybe"}}, "pipeline.require_human_review", "boolean"),
    ],
)
def test_invalid_setting_is_reported_with_its_field(override, field, needle):
    context = cdk_context()
    context["stages"]["dev"] = {**context["stages"]["dev"], **override}
    with pytest.raises(ConfigError) as info:
        load_stage_config(context, "dev")
    message = str(info.value)
    assert f"stages.dev.{field}" in message
    assert needle in message


def test_every_problem_is_reported_at_once():
    context = cdk_context()
    context["stages"]["dev"] = {**context["stages"]["dev"], "max_azs": 9, "vpc_cidr": "nope"}
    with pytest.raises(ConfigError) as info:
        load_stage_config(context, "dev")
    assert "stages.dev.max_azs" in str(info.value)
    assert "stages.dev.vpc_cidr" in str(info.value)


def test_unknown_stage_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown stage 'qa'; known: dev, prod"):
        load_stage_config(cdk_context(), "qa")


def test_instance_family_parses_sagemaker_types():
    assert instance_family("ml.p4d.24xlarge") == "p4d"
    with pytest.raises(ValueError):
        instance_family("ml.zz9.large")


def test_resource_prefix_joins_project_and_stage():
    assert StageConfig(stage="prod").resource_prefix == "llmq-prod"


def _run_app(tmp_path: Path, context: dict[str, object]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_app_py_stops_on_bad_config_and_emits_no_stack(tmp_path):
    context = cdk_context()
    context["stage"] = "dev"
    context["stages"]["dev"]["vpc_cidr"] = "10.0.0.0/33"
    result = _run_app(tmp_path, context)
    assert result.returncode == 1
    assert "invalid configuration: stages.dev.vpc_cidr" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


def test_capture_is_off_unless_a_stage_asks_and_dev_asks_for_20_percent():
    context = cdk_context()
    assert load_stage_config(context, "prod").data_capture.enabled is False
    dev = load_stage_config(context, "dev").data_capture
    assert dev.enabled and dev.sampling_percentage == 20
