"""Quality gates over every synthesized template: cdk-nag, cfn-lint, IAM wildcards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from aws_cdk import App
from aws_cdk import aws_s3 as s3

from stacks.app_builder import build_stacks
from stacks.config import load_stage_config
from tests.infra.conftest import cdk_context

# Statements that may keep a wildcard, each with the reason a reviewer accepted.
# Key: (resource logical id prefix, "" for any, action). Anything else with "*" fails.
_VPC_FUNCTION = "A function in a VPC manages its own ENIs; these EC2 APIs have no resource-level permissions."
_XRAY = "X-Ray trace submission has no resource-level permissions; tracing is required on every function."
ACCEPTED_WILDCARDS: dict[tuple[str, str], str] = {
    ("", "ec2:CreateNetworkInterface"): _VPC_FUNCTION,
    ("", "ec2:DeleteNetworkInterface"): _VPC_FUNCTION,
    ("", "ec2:AssignPrivateIpAddresses"): _VPC_FUNCTION,
    ("", "ec2:UnassignPrivateIpAddresses"): _VPC_FUNCTION,
    ("", "xray:PutTraceSegments"): _XRAY,
    ("", "xray:PutTelemetryRecords"): _XRAY,
    ("QualitySamplerRole", "cloudwatch:PutMetricData"): (
        "PutMetricData has no resource type; the statement is limited to the LLMQ/Quality namespace by the "
        "cloudwatch:namespace condition (tests/infra/test_quality_sampler.py)."
    ),
    ("ProjectKey", "kms:*"): (
        "Key-policy statement for the account root: in a key policy Resource '*' is the key itself, and "
        "without this statement IAM policies could not grant use of the key (it would become unmanageable)."
    ),
    **{
        (role, action): (
            "Application Auto Scaling checks that the caller of RegisterScalableTarget/PutScalingPolicy may "
            "PutMetricAlarm and DeleteAlarms with probes that name no alarm; AWS's SageMaker example grants "
            "them on * (docs/aws-behaviour.md)."
        )
        for role in ("CanaryGuardRole", "RollbackRole")
        for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms")
    },
    ("InputDriftFunctionRole", "cloudwatch:PutMetricData"): (
        "PutMetricData has no resource type; the statement is limited to the LLMQ/InputDrift namespace by "
        "the cloudwatch:namespace condition (tests/infra/test_input_drift_monitoring.py)."
    ),
    **{
        ("StateMachineRole", action): (
            "Step Functions log delivery to CloudWatch Logs: these APIs have no resource-level permissions "
            "(CDK adds them for a state machine with logging)."
        )
        for action in (
            "logs:CreateLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:PutResourcePolicy",
        )
    },
}

WRITE_VERBS = ("Put", "Create", "Delete", "Update", "Write", "Attach", "Detach", "Set", "Modify", "Tag", "Untag")


def test_project_stacks_synthesize_with_cdk_nag_clean(dev_app, nat_app):
    # The fixtures call app.synth() with the AwsSolutions pack registered: any
    # unacknowledged finding raises there. Here: the acknowledgments left carry reasons.
    for app in (dev_app, nat_app):
        report = json.loads((app.outdir / "validation-report.json").read_text())
        for plugin in report["pluginReports"]:
            assert plugin["violations"] == []
            for suppressed in plugin.get("suppressedViolations", []):
                assert len(suppressed["reason"]) >= 40, suppressed


def test_a_new_finding_in_a_project_stack_fails_synth(tmp_path):
    context = cdk_context()
    app = App(context=context, outdir=str(tmp_path))
    stacks = build_stacks(app, load_stage_config(context, "dev"))
    # No access logs, no TLS-only policy: AwsSolutions-S1 and -S10 must fire.
    s3.Bucket(stacks.storage, "ProbeUnloggedBucket")
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


def test_cfn_lint_reports_no_errors(dev_app, nat_app):
    templates = [str(p) for app in (dev_app, nat_app) for p in app.outdir.glob("*.template.json")]
    assert templates
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "json", *templates],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)[:4000]


def _statements(template: dict) -> list[tuple[str, str, dict]]:
    """(logical id, document kind, statement) for every policy document in a template."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        docs = [(kind, props.get(kind)) for kind in ("PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy")]
        docs += [("PolicyDocument", p.get("PolicyDocument")) for p in props.get("Policies", [])]
        for kind, doc in docs:
            if doc:
                found += [(logical_id, kind, s) for s in doc["Statement"]]
    return found


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_action_or_wildcard_resource_with_write_actions(dev_app):
    problems = []
    for stack in dev_app.all_stacks():
        for logical_id, kind, statement in _statements(dev_app.template_json(stack)):
            actions = [a for a in _as_list(statement.get("Action", [])) if isinstance(a, str)]
            resources = _as_list(statement.get("Resource", []))
            if statement["Effect"] != "Allow":
                continue
            for action in actions:
                verb = action.split(":", 1)[-1]
                wild_action = action == "*" or verb == "*"
                # In a key policy, Resource "*" means the key itself, not every resource.
                wild_write = "*" in resources and verb.startswith(WRITE_VERBS) and kind != "KeyPolicy"
                if (wild_action or wild_write) and not _accepted(logical_id, action):
                    problems.append(f"{stack.stack_name}/{logical_id}: {action} on {resources}")
    assert problems == []


def _accepted(logical_id: str, action: str) -> bool:
    return any(logical_id.startswith(prefix) and action == act for prefix, act in ACCEPTED_WILDCARDS)
