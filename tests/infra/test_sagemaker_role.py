"""The SageMaker execution role: image pulls limited to the stack's image repositories; PassRole to SageMaker only."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template

from stacks.job_role_grants import PULL_ACTIONS
from stacks.sagemaker_role import grant_pass_to_sagemaker, repository_arn_of_image

REGION, ACCOUNT = "eu-west-1", "111122223333"


def _evaluate(value: Any, template: dict[str, Any]) -> Any:  # noqa: PLR0911 - one return per intrinsic
    """Just enough of CloudFormation's intrinsics for the role's statements, in REGION/ACCOUNT."""
    if isinstance(value, list):
        return [_evaluate(v, template) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((fn, arg),) = value.items()
    pseudo = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if fn == "Ref":
        return pseudo[arg]
    if fn == "Fn::Join":
        return arg[0].join(_evaluate(arg[1], template))
    if fn == "Fn::Split":
        return _evaluate(arg[1], template).split(arg[0])
    if fn == "Fn::Select":
        return _evaluate(arg[1], template)[arg[0]]
    if fn == "Fn::FindInMap":
        name, key, attribute = _evaluate(arg, template)
        return template["Mappings"][name][key][attribute]
    if fn == "Fn::Sub":
        text = arg
        for name, replacement in pseudo.items():
            text = text.replace("${" + name + "}", replacement)
        return text
    raise AssertionError(f"unexpected intrinsic {fn}")


def _role_statements(dev_app) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    pipeline = dev_app.stacks.pipeline
    template = dev_app.template_json(pipeline)
    (policy,) = [
        r
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Policy" and lid.startswith("SageMakerRole")
    ]
    return [_evaluate(s, template) for s in policy["Properties"]["PolicyDocument"]["Statement"]], template


def test_image_pulls_allow_only_the_asset_repository_and_the_resolved_dlc_repositories(dev_app):
    statements, template = _role_statements(dev_app)
    (pull,) = [s for s in statements if s.get("Sid") == "PullImages"]
    assert sorted(pull["Action"]) == sorted(PULL_ACTIONS)
    resources = _evaluate(pull["Resource"], template)
    (mapping,) = template["Mappings"].values()
    expected_dlc = {
        f"arn:aws:ecr:{REGION}:{uri.split('.', 1)[0]}:repository/{uri.split('/', 1)[1].split(':', 1)[0]}"
        for uri in (mapping[REGION]["Training"], mapping[REGION]["Serving"])
    }
    asset = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/cdk-hnb659fds-container-assets-{ACCOUNT}-{REGION}"
    assert sorted(resources) == sorted({asset, *expected_dlc})
    assert not any("*" in r for r in resources)


def test_only_the_authorization_token_keeps_a_wildcard_ecr_resource(dev_app):
    statements, _ = _role_statements(dev_app)
    ecr_on_star = {
        action
        for s in statements
        if "*" in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        if action.startswith("ecr:")
    }
    assert ecr_on_star == {"ecr:GetAuthorizationToken"}


def test_repository_arn_of_a_literal_image_uri():
    arn = repository_arn_of_image("763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130")
    assert arn.endswith(":ecr:us-east-1:763104351884:repository/djl-inference")
    arn = repository_arn_of_image("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/quantize@sha256:" + "a" * 64)
    assert arn.endswith(":ecr:cn-north-1:123456789012:repository/team/quantize")
    with pytest.raises(ValueError, match="not an ECR image URI"):
        repository_arn_of_image("docker.io/library/python:3.13")


def test_grant_pass_to_sagemaker_passes_only_that_role_only_to_sagemaker(tmp_path):
    stack = Stack(App(outdir=str(tmp_path)), "PassRoleProbe")
    target = iam.Role(stack, "Target", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    caller = iam.Role(stack, "Caller", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
    grant_pass_to_sagemaker(target, caller)
    Template.from_stack(stack).has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": Match.string_like_regexp("^Caller")}],
            "PolicyDocument": {
                "Statement": [
                    {
                        "Action": "iam:PassRole",
                        "Effect": "Allow",
                        "Resource": {"Fn::GetAtt": [Match.string_like_regexp("^Target"), "Arn"]},
                        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                    }
                ]
            },
        },
    )
