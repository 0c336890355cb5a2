"""Assertions on the synthesized pipeline stack (the executed behaviour is in tests/workflow)."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from stacks.workflow_steps import (
    LAMBDA_TRANSIENT,
    MODELED_TRANSIENT,
    RESOURCE_LIMIT,
    SDK_BASE_ERRORS,
    SNS_TRANSIENT,
)
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


def test_every_task_retries_under_the_names_step_functions_really_reports_and_is_caught(dev_app):
    states = _all_states(_definition(dev_app))
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert len(tasks) > 20
    # Every name a retrier lists is one Step Functions reports (stacks/workflow_steps.py).
    known = {
        *SDK_BASE_ERRORS.values(),
        *(name for names in MODELED_TRANSIENT.values() for name in names),
        *SNS_TRANSIENT,
        *LAMBDA_TRANSIENT,
        RESOURCE_LIMIT,
        "Lambda.ClientExecutionTimeoutException",
    }
    lookups = []
    for name, task in tasks.items():
        retriers = task.get("Retry", [])
        catches = task.get("Catch", [])
        assert catches and catches[0]["ErrorEquals"] == ["States.ALL"], name
        if not retriers:
            # Lookups: "not found" is itself the base exception, so they catch and read the cause.
            assert name.startswith("Find "), name
            lookups.append(name)
            continue
        for retrier in retriers:
            assert set(retrier["ErrorEquals"]) <= known, (name, retrier["ErrorEquals"])
            assert retrier["MaxAttempts"] <= 6, name
        resource = task["Resource"]
        if ":aws-sdk:sagemaker:" in resource:
            assert any("SageMaker.AmazonSageMakerException" in r["ErrorEquals"] for r in retriers), name
            if ":createTrainingJob" in resource or ":createProcessingJob" in resource:
                (limit,) = [r for r in retriers if r["ErrorEquals"] == [RESOURCE_LIMIT]]
                assert limit["IntervalSeconds"] >= 60, name
    assert len(lookups) == 5
    # No retrier may name what no integration reports (the old "SageMaker.ThrottlingException").
    text = json.dumps(_definition(dev_app))
    assert "SageMaker.ThrottlingException" not in text


def test_no_sync_integrations_and_sagemaker_only_through_sdk_calls(dev_app):
    for name, state in _all_states(_definition(dev_app)).items():
        resource = state.get("Resource", "")
        if isinstance(resource, str):
            assert ".sync" not in resource, name
            assert ":::sagemaker:" not in resource, name


def test_pass_role_is_conditioned_on_sagemaker_as_the_receiving_service(dev_app):
    resources = dev_app.template_json(dev_app.stacks.pipeline)["Resources"]
    statements = [
        s
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "iam:PassRole" in _actions(s)
    ]
    assert statements
    for statement in statements:
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_autoscaling_writes_are_scoped_to_sagemaker_variant_counts_for_both_functions(dev_app):
    """Register/Deregister/Put* authorize on service-generated scalable-target ids: scoped by condition keys."""
    writes = [
        s
        for stack in (dev_app.stacks.pipeline, dev_app.stacks.monitoring)
        for r in dev_app.template_json(stack)["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "application-autoscaling:RegisterScalableTarget" in _actions(s)
    ]
    assert len(writes) == 2  # the canary guard (promotion) and the rollback function (restore)
    for statement in writes:
        assert sorted(_actions(statement)) == [
            "application-autoscaling:DeregisterScalableTarget",
            "application-autoscaling:PutScalingPolicy",
            "application-autoscaling:PutScheduledAction",
            "application-autoscaling:RegisterScalableTarget",
        ]
        assert json.dumps(statement["Resource"]).endswith(':scalable-target/*"]]}')
        assert statement["Condition"] == {
            "StringEquals": {
                "application-autoscaling:service-namespace": "sagemaker",
                "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
            }
        }


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
    assert update
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
