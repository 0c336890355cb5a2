"""The evaluate job's role: a client of the canaried endpoints, its inputs, its reports, and nothing else.

Judged the way AWS judges it: the synthesized statements, intrinsics resolved into the emulated
account (tests/workflow/harness.py), through the IAM evaluator of tests/aws_conformance/iam.py.
"""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Stack

from stacks.evaluate_role import endpoint_arns
from tests.aws_conformance.iam import PolicyEvaluator, policies_of_role
from tests.workflow.harness import ACCOUNT, REGION, TemplateResolver

SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
ASSET_REPOSITORY = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/cdk-hnb659fds-container-assets-{ACCOUNT}-{REGION}"
EXPECTED_ACTIONS = {
    "sagemaker:InvokeEndpoint",
    "sagemaker:InvokeEndpointWithResponseStream",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:CreateGrant",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogStreams",
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterfacePermission",
}


def _as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def resolved(dev_app):
    templates = {stack.stack_name: dev_app.template_json(stack) for stack in dev_app.all_stacks()}
    return TemplateResolver(templates), dev_app.stacks.pipeline.stack_name


@pytest.fixture(scope="module")
def definition(resolved):
    resolver, stack = resolved
    (machine,) = resolver.resources_of_type(stack, "AWS::StepFunctions::StateMachine").values()
    return json.loads(resolver.resolve(stack, machine["Properties"]["DefinitionString"]))


@pytest.fixture(scope="module")
def evaluate_role(resolved, definition):
    """The role the state machine passes to CreateProcessingJob, as an IAM evaluator."""
    resolver, stack = resolved
    role_arn = definition["States"]["Create evaluate job"]["Parameters"]["RoleArn"]
    logical_id = role_arn.rsplit("/", 1)[-1]
    assert logical_id.startswith("EvaluateRole"), role_arn
    return PolicyEvaluator(policies_of_role(resolver, stack, logical_id), name=role_arn), logical_id


def _bucket(resolved) -> str:
    resolver, _ = resolved
    (storage,) = [s for s in resolver.templates if s.endswith("-storage")]
    buckets = resolver.resources_of_type(storage, "AWS::S3::Bucket")
    (artifacts,) = [lid for lid in buckets if lid.startswith("ArtifactStoreArtifacts")]
    return resolver.resolve(storage, {"Ref": artifacts})


def test_the_processing_job_runs_as_the_evaluate_role_in_the_vpc_without_network_isolation(definition):
    create = definition["States"]["Create evaluate job"]["Parameters"]
    sagemaker_role = definition["States"]["Create training job"]["Parameters"]["RoleArn"]
    assert create["RoleArn"] != sagemaker_role
    network = create["NetworkConfig"]
    assert network["EnableNetworkIsolation"] is False
    assert network["VpcConfig"] == definition["States"]["Create training job"]["Parameters"]["VpcConfig"]
    # The quantize job keeps its isolation: only the evaluate job is a client of anything.
    assert definition["States"]["Create training job"]["Parameters"]["EnableNetworkIsolation"] is True
    inputs = {i["InputName"]: i["S3Input"] for i in create["ProcessingInputs"]}
    assert set(inputs) == {"baseline", "candidate", "manifest", "validation"}
    for name, item in inputs.items():
        assert item["LocalPath"] == f"/opt/ml/processing/input/{name}"
        assert item["S3DataType"] == "S3Prefix"
    assert inputs["baseline"]["S3Uri.$"] == "$.run.s3.baseline_config_uri"
    assert inputs["candidate"]["S3Uri.$"] == "$.run.s3.candidate_config_uri"
    assert inputs["manifest"]["S3Uri.$"] == "$.run.s3.manifest_uri"


def test_the_role_holds_only_the_actions_the_job_needs(evaluate_role):
    role, _ = evaluate_role
    actions = {action for s in role.statements for action in _as_list(s["Action"])}
    assert actions == EXPECTED_ACTIONS
    assert all(s["Effect"] == "Allow" for s in role.statements)


def test_it_may_invoke_only_the_endpoints_a_run_may_canary(evaluate_role, dev_app):
    role, _ = evaluate_role
    assert dev_app.config.monitored_endpoints == ("llmq-dev-chat",)
    for action in ("sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"):
        assert role.is_allowed(action, f"{SM}:endpoint/llmq-dev-chat")
        assert not role.is_allowed(action, f"{SM}:endpoint/llmq-dev-other")
        assert not role.is_allowed(action, f"{SM}:endpoint/someone-elses")
    for action in ("sagemaker:UpdateEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities", "sagemaker:AddTags"):
        assert not role.is_allowed(action, f"{SM}:endpoint/llmq-dev-chat")
    assert not role.is_allowed("sagemaker:InvokeEndpointAsync", f"{SM}:endpoint/llmq-dev-chat")


def test_endpoint_arns_are_lower_cased_as_sagemaker_writes_them(tmp_path):
    stack = Stack(App(outdir=str(tmp_path)), "Probe", env={"account": ACCOUNT, "region": REGION})

    def names(arns):
        return [stack.resolve(arn)["Fn::Join"][1][-1].rsplit(":", 1)[-1] for arn in arns]

    assert names(endpoint_arns(stack, ["llmq-dev-Chat"], "llmq-dev")) == ["endpoint/llmq-dev-chat"]
    # No monitored endpoint: the stage prefix (the validator refuses every run then anyway).
    assert names(endpoint_arns(stack, [], "llmq-dev")) == ["endpoint/llmq-dev-*"]


def test_it_reads_its_inputs_and_writes_only_its_reports(evaluate_role, resolved):
    role, _ = evaluate_role
    bucket = _bucket(resolved)
    for key in (
        "sources/llama-8b/config.json",
        "models/llama-8b/r1/llmq-dev-llama-8b-r1-q/output/model/config.json",
        "models/llama-8b/r1/manifest.json",
        "datasets/validation/part-0.jsonl",
    ):
        assert role.is_allowed("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"), key
    assert role.is_allowed("s3:ListBucket", f"arn:aws:s3:::{bucket}")
    assert role.is_allowed("s3:PutObject", f"arn:aws:s3:::{bucket}/models/llama-8b/r1/reports/report.json")
    for key in ("models/llama-8b/r1/manifest.json", "models/llama-8b/r1/x/output/model/config.json", "sources/x"):
        assert not role.is_allowed("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}"), key
    assert not role.is_allowed("s3:GetObject", "arn:aws:s3:::someone-elses-bucket/data")
    assert not role.is_allowed("s3:DeleteObject", f"arn:aws:s3:::{bucket}/models/llama-8b/r1/reports/report.json")


def test_logs_images_key_and_network_are_scoped(evaluate_role):
    role, _ = evaluate_role
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/ProcessingJobs"
    assert role.is_allowed("logs:PutLogEvents", f"{group}:log-stream:llmq-dev-llama-8b-r1-e/algo-1")
    assert role.is_allowed("logs:CreateLogGroup", f"{group}:*")
    assert not role.is_allowed("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/x:*")
    assert role.is_allowed("ecr:BatchGetImage", ASSET_REPOSITORY)
    assert not role.is_allowed("ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:763104351884:repository/djl-inference")
    kms = [s for s in role.statements if any(a.startswith("kms:") for a in _as_list(s["Action"]))]
    assert kms and all("*" not in json.dumps(s["Resource"]) for s in kms)
    eni = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-0123"
    assert role.is_allowed("ec2:CreateNetworkInterfacePermission", eni)
    assert not role.is_allowed("ec2:RunInstances", "*")


def test_the_role_is_assumed_by_sagemaker_and_passed_only_to_it(resolved, evaluate_role):
    resolver, stack = resolved
    _, logical_id = evaluate_role
    role = resolver.templates[stack]["Resources"][logical_id]
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    (machine_id,) = resolver.resources_of_type(stack, "AWS::StepFunctions::StateMachine")
    machine_role = resolver.templates[stack]["Resources"][machine_id]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    state_machine = PolicyEvaluator(policies_of_role(resolver, stack, machine_role))
    evaluate_arn = resolver.resolve(stack, {"Fn::GetAtt": [logical_id, "Arn"]})
    assert state_machine.is_allowed("iam:PassRole", evaluate_arn, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not state_machine.is_allowed("iam:PassRole", evaluate_arn, {"iam:PassedToService": "ec2.amazonaws.com"})
