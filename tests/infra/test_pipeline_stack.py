"""Assertions on the synthesized pipeline stack (the executed behaviour is in tests/workflow)."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from stacks.pipeline_workflow import transient_errors
from tests.workflow.harness import TemplateResolver


def _definition(dev_app) -> dict:
    templates = {stack.stack_name: dev_app.template_json(stack) for stack in dev_app.all_stacks()}
    name = dev_app.stacks.pipeline.stack_name
    resolver = TemplateResolver(templates)
    (machine,) = resolver.resources_of_type(name, "AWS::StepFunctions::StateMachine").values()
    return json.loads(resolver.resolve(name, machine["Properties"]["DefinitionString"]))


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def _all_states(definition: dict) -> dict[str, dict]:
    states = dict(definition["States"])
    for state in definition["States"].values():
        if state["Type"] == "Map":
            states.update(_all_states(state["ItemProcessor"]))
    return states


def test_state_machine_is_standard_traced_logged_in_full_and_bounded(dev_app):
    template = dev_app.template(dev_app.stacks.pipeline)
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
            "StateMachineName": "llmq-dev-model-pipeline",
        },
    )
    assert _definition(dev_app)["TimeoutSeconds"] == 168 * 3600
    template.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value()})


def test_failed_executions_alarm_notifies_the_kms_encrypted_outcome_topic(dev_app):
    template = dev_app.template(dev_app.stacks.pipeline)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "llmq-dev-model-pipeline-failed",
            "Threshold": 1,
            "AlarmActions": [Match.any_value()],
            "Metrics": Match.array_with([Match.object_like({"Expression": "failed + timedout + aborted"})]),
        },
    )


def test_every_task_retries_transient_errors_with_jitter_and_is_caught(dev_app):
    states = _all_states(_definition(dev_app))
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert len(tasks) > 20
    for name, task in tasks.items():
        retriers = task.get("Retry", [])
        assert retriers, name
        transient = [
            r
            for r in retriers
            if "Lambda.ServiceException" in r["ErrorEquals"]
            or any(e.endswith(".ThrottlingException") for e in r["ErrorEquals"])
        ]
        assert transient, name
        for retrier in transient:
            assert retrier["MaxAttempts"] <= 6, name
            if "Lambda.ServiceException" not in retrier["ErrorEquals"]:
                assert retrier["JitterStrategy"] == "FULL", name
                assert retrier["MaxDelaySeconds"] == 60, name
        # Inside the bake Map, errors reach the Map's Catch (the rollback path) via the step's Fail.
        catches = task.get("Catch", [])
        assert catches and catches[0]["ErrorEquals"] == ["States.ALL"], name


def test_no_sync_integrations_and_sagemaker_only_through_sdk_calls(dev_app):
    for name, state in _all_states(_definition(dev_app)).items():
        resource = state.get("Resource", "")
        if isinstance(resource, str):
            assert ".sync" not in resource, name
            assert ":::sagemaker:" not in resource, name


def test_transient_error_names_follow_the_sdk_integration_convention():
    names = transient_errors("sagemaker")
    assert "SageMaker.ThrottlingException" in names
    assert "SageMaker.ServiceUnavailableException" in names
    assert all(n.startswith("SageMaker.") and n.endswith("Exception") for n in names)
    assert len(names) == len(set(names))


def test_sagemaker_role_is_assumed_only_by_sagemaker_and_passed_only_to_it(dev_app):
    template = dev_app.template(dev_app.stacks.pipeline)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]}
            )
        },
    )
    policies = dev_app.template_json(dev_app.stacks.pipeline)["Resources"]
    statements = [
        s
        for r in policies.values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    create_job = [s for s in statements if "sagemaker:createTrainingJob" in _actions(s)]
    assert create_job and all("training-job/llmq-dev-*" in json.dumps(s["Resource"]) for s in create_job)
    update = [s for s in statements if "sagemaker:updateEndpointWeightsAndCapacities" in _actions(s)]
    assert update and all("endpoint/llmq-dev-chat" in json.dumps(s["Resource"]) for s in update)
    assert [s for s in statements if "iam:PassRole" in _actions(s)]


def test_images_resolve_per_region_without_account_ids_in_code(dev_app):
    template = dev_app.template_json(dev_app.stacks.pipeline)
    mapping = next(iter(template["Mappings"].values()))
    assert mapping["us-east-1"]["Serving"].endswith("djl-inference:0.38.0-lmi29.0.0-cu130")
    assert "pytorch-training:2.10.0-gpu-py313" in mapping["eu-west-1"]["Training"]
    assert mapping["cn-north-1"]["Serving"].startswith("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/")
    env = next(
        r["Properties"]["Environment"]["Variables"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("FunctionName") == "llmq-dev-validate-input"
    )
    assert env["SERVING_IMAGE_URI"]["Fn::FindInMap"][1] == {"Ref": "AWS::Region"}
    assert json.loads(env["MONITORED_ENDPOINTS"]) == ["llmq-dev-chat"]
