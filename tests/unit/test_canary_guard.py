"""The canary guard's pre-canary verdict (lambda/canary_guard/guard_logic.py) by the endpoint's tags and config.

The executed scenarios are in tests/workflow; these pin the phase rules on a small stand-in of the three
SageMaker reads the guard makes (DescribeEndpoint, ListTags, DescribeEndpointConfig).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT / "lambda" / "shared", ROOT / "lambda" / "canary_guard"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import guard_logic  # type: ignore[import-not-found]  # noqa: E402

ENDPOINT = "llmq-dev-chat"
APPROVED = "chat-bf16-v1-config"
CANARY = "llmq-dev-llama-8b-run-001"
SERVING = {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.g5.2xlarge", "InitialVariantWeight": 1.0}
CANDIDATE = {**SERVING, "VariantName": "candidate", "ModelName": "c", "InitialVariantWeight": 0.0}


class SageMakerReads:
    """DescribeEndpoint, ListTags and DescribeEndpointConfig of one endpoint."""

    def __init__(self, config: str, tags: dict[str, str]) -> None:
        self.config = config
        self.tags = tags
        self.configs = {APPROVED: [SERVING], CANARY: [SERVING, CANDIDATE]}

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"EndpointConfigName": self.config, "EndpointArn": f"arn:aws:sagemaker:::endpoint/{EndpointName}"}

    def list_tags(self, ResourceArn: str) -> dict[str, Any]:  # noqa: N803
        return {"Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()]}

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        return {"ProductionVariants": self.configs[EndpointConfigName]}


def _pre_canary(sm: SageMakerReads, run_id: str = "run-001") -> Any:
    return guard_logic.pre_canary(
        sm,
        None,  # the serving variant's instance type is the candidate's: autoscaling is not read
        endpoint=ENDPOINT,
        run_id=run_id,
        serving_variant="AllTraffic",
        canary_config=CANARY,
        local_storage_families=["g5"],
        candidate_local_storage=True,
        candidate_instance_type="ml.g5.2xlarge",
    )


def _tags(phase: str, run_id: str = "run-001") -> dict[str, str]:
    return {"llmq:phase": phase, "llmq:run-id": run_id, "llmq:last-approved-config": APPROVED}


@pytest.mark.parametrize("phase", ["evaluating", "canary"])
def test_a_rerun_of_the_same_run_resumes_on_its_deployed_canary_config(phase):
    verdict = _pre_canary(SageMakerReads(CANARY, _tags(phase)))
    assert (verdict.ok, verdict.resume, verdict.last_approved) == (True, True, APPROVED)


def test_another_runs_candidate_under_evaluation_refuses_a_new_canary():
    verdict = _pre_canary(SageMakerReads(CANARY, _tags("evaluating", run_id="run-000")), run_id="run-001")
    assert not verdict.ok
    assert "evaluating" in verdict.reason and "run-000" in verdict.reason


def test_a_stale_evaluating_tag_on_a_baseline_only_endpoint_still_refuses():
    """The rollback function never guards phase evaluating: a person restores the tags first."""
    verdict = _pre_canary(SageMakerReads(APPROVED, _tags("evaluating", run_id="run-000")))
    assert not verdict.ok
    assert "evaluating" in verdict.reason


@pytest.mark.parametrize("phase", ["rolled-back", "promoted", ""])
def test_a_settled_endpoint_takes_a_new_canary_and_records_its_config(phase):
    verdict = _pre_canary(SageMakerReads(APPROVED, _tags(phase, run_id="run-000")))
    assert (verdict.ok, verdict.resume, verdict.last_approved) == (True, False, APPROVED)
    assert verdict.serving["InitialVariantWeight"] == 1.0  # copied whole into the canary config
