"""tests/aws_conformance: request validation, Step Functions error names, IAM evaluation and the botocore hook."""

from __future__ import annotations

import json
import time

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError

from tests.aws_conformance import hook
from tests.aws_conformance.errors import (
    SERVICE_NAMING,
    modeled_exception,
    name_client_error,
    step_functions_cause,
    step_functions_error,
)
from tests.aws_conformance.iam import (
    NoAuthorizationRuleError,
    PolicyEvaluator,
    UnsupportedPolicyFeatureError,
    access_denied_message,
    policies_of_role,
    required_authorizations,
)
from tests.aws_conformance.requests import (
    UNTRANSLATABLE_PATTERNS,
    check_exact_member_names,
    check_request,
    compiled_pattern,
    translate_java_pattern,
    validation_message,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-exec"
SM_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


@pytest.fixture(scope="module")
def models():
    session = botocore.session.get_session()
    return {name: session.get_service_model(name) for name in ("sagemaker", "cloudwatch", "sns", "s3", "lambda")}


def _training_job(**overrides):
    params = {
        "TrainingJobName": "llmq-dev-llama-8b-run-001-q",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "1.dkr.ecr.us-east-1.amazonaws.com/q:1",
            "TrainingInputMode": "File",
        },
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models/"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 28800},
    }
    params.update(overrides)
    return params


# ----- request validation


def test_a_good_create_training_job_passes(models):
    assert check_request(models["sagemaker"], "CreateTrainingJob", _training_job()) == []


def test_a_64_character_training_job_name_fails_on_max_length(models):
    errors = check_request(models["sagemaker"], "CreateTrainingJob", _training_job(TrainingJobName="a" * 64))
    assert f"Value '{'a' * 64}' at 'trainingJobName' failed to satisfy constraint: " in errors[0]
    assert errors[0].endswith("Member must have length less than or equal to 63")


def test_an_instance_type_outside_the_enum_fails(models):
    resource = {"InstanceType": "ml.g5.13xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    (error,) = check_request(models["sagemaker"], "CreateTrainingJob", _training_job(ResourceConfig=resource))
    assert error.startswith("Value 'ml.g5.13xlarge' at 'resourceConfig.instanceType' failed to satisfy constraint: ")
    assert "Member must satisfy enum value set: [ml.m4.xlarge" in error


def test_volume_size_bounds_follow_the_model(models):
    # CreateTrainingJob's VolumeSizeInGB is OptionalVolumeSizeInGB (min 0): 0 is valid there.
    zero = {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0}
    assert check_request(models["sagemaker"], "CreateTrainingJob", _training_job(ResourceConfig=zero)) == []
    cluster = {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 0}
    processing = {
        "ProcessingJobName": "p",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "img"},
        "ProcessingResources": {"ClusterConfig": cluster},
    }
    (too_small,) = check_request(models["sagemaker"], "CreateProcessingJob", processing)
    assert "ProcessingResources.ClusterConfig.VolumeSizeInGB" in too_small  # botocore's minimum check
    cluster["VolumeSizeInGB"] = 16385
    (too_big,) = check_request(models["sagemaker"], "CreateProcessingJob", processing)
    assert "'processingResources.clusterConfig.volumeSizeInGB'" in too_big
    assert too_big.endswith("Member must have value less than or equal to 16384")


def test_a_variant_weight_below_0_is_refused_and_0_is_valid(models):
    """ProductionVariant.InitialVariantWeight and DesiredWeight: minimum 0 (the candidate joins at 0)."""
    serving = {
        "VariantName": "AllTraffic",
        "ModelName": "b",
        "InstanceType": "ml.g5.2xlarge",
        "InitialVariantWeight": 1,
    }
    candidate = {"VariantName": "candidate", "ModelName": "m", "InstanceType": "ml.g5.2xlarge"}
    params = {"EndpointConfigName": "c", "ProductionVariants": [serving, dict(candidate, InitialVariantWeight=0.0)]}
    assert check_request(models["sagemaker"], "CreateEndpointConfig", params) == []
    params["ProductionVariants"][1]["InitialVariantWeight"] = -1.0
    (error,) = check_request(models["sagemaker"], "CreateEndpointConfig", params)
    assert "ProductionVariants[1].InitialVariantWeight" in error and "valid min value: 0" in error
    weights = {"EndpointName": "e", "DesiredWeightsAndCapacities": [{"VariantName": "candidate", "DesiredWeight": -5}]}
    (error,) = check_request(models["sagemaker"], "UpdateEndpointWeightsAndCapacities", weights)
    assert "DesiredWeight" in error and "valid min value: 0" in error


def test_a_data_capture_config_is_held_to_the_createendpointconfig_reference(models):
    """DataCaptureConfig: InitialSamplingPercentage 0-100, CaptureOptions 1-32 of Input/Output, DestinationS3Uri
    an s3:// or https:// URI of at most 512 characters, KmsKeyId of [a-zA-Z0-9:/_-] (docs/aws-behaviour.md)."""
    from contracts.data_capture import data_capture_config

    variant = {"VariantName": "candidate", "ModelName": "m", "InstanceType": "ml.g5.2xlarge"}
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    capture = data_capture_config("s3://bucket/models/m/r/capture/", 20, key)
    params = {"EndpointConfigName": "c", "ProductionVariants": [variant], "DataCaptureConfig": capture}
    assert check_request(models["sagemaker"], "CreateEndpointConfig", params) == []
    for change, where in (
        ({"InitialSamplingPercentage": 101}, "initialSamplingPercentage"),
        ({"CaptureOptions": [{"CaptureMode": "Everything"}]}, "captureMode"),
        ({"DestinationS3Uri": "bucket/capture/"}, "destinationS3Uri"),
        ({"KmsKeyId": "alias with spaces"}, "kmsKeyId"),
    ):
        errors = check_request(
            models["sagemaker"], "CreateEndpointConfig", {**params, "DataCaptureConfig": {**capture, **change}}
        )
        assert len(errors) == 1 and where in errors[0], (change, errors)
    missing = {k: v for k, v in capture.items() if k != "CaptureOptions"}
    (error,) = check_request(models["sagemaker"], "CreateEndpointConfig", {**params, "DataCaptureConfig": missing})
    assert "CaptureOptions" in error


def test_inference_ami_version_outside_the_enum_fails(models):
    variant = {"VariantName": "candidate", "ModelName": "m", "InstanceType": "ml.g5.2xlarge"}
    params = {"EndpointConfigName": "c", "ProductionVariants": [dict(variant, InferenceAmiVersion="al2-gpu-9")]}
    (error,) = check_request(models["sagemaker"], "CreateEndpointConfig", params)
    assert "at 'productionVariants.1.member.inferenceAmiVersion'" in error
    ok = {
        "EndpointConfigName": "c",
        "ProductionVariants": [dict(variant, InferenceAmiVersion="al2-ami-sagemaker-inference-gpu-2")],
    }
    assert check_request(models["sagemaker"], "CreateEndpointConfig", ok) == []


def test_cloudwatch_history_item_type_enum(models):
    assert check_request(models["cloudwatch"], "DescribeAlarmHistory", {"HistoryItemType": "StateUpdate"}) == []
    (error,) = check_request(models["cloudwatch"], "DescribeAlarmHistory", {"HistoryItemType": "stateupdate"})
    assert "Member must satisfy enum value set: [ConfigurationUpdate, StateUpdate" in error


def test_patterns_are_matched_against_the_whole_value(models):
    (error,) = check_request(models["sagemaker"], "DescribeTrainingJob", {"TrainingJobName": "bad_name"})
    assert "Member must satisfy regular expression pattern: " in error


def test_botocore_errors_are_kept(models):
    errors = check_request(models["sagemaker"], "DescribeTrainingJob", {"trainingJobName": "x"})
    assert any("Unknown parameter in input" in e for e in errors)
    assert any("Missing required parameter" in e for e in errors)


def test_list_max_length(models):
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    errors = check_request(models["sagemaker"], "AddTags", {"ResourceArn": f"{SM_ARN}:endpoint/e", "Tags": tags})
    assert any(e.endswith("Member must have length less than or equal to 50") for e in errors)


def test_validation_message_counts_like_aws():
    assert validation_message(["a"]) == "1 validation error detected: a"
    assert validation_message(["a", "b"]) == "2 validation errors detected: a; b"


def test_java_unicode_properties_and_surrogate_ranges_translate():
    tag = compiled_pattern("([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)")
    assert tag.fullmatch("Équipe 9: ok")
    assert not tag.fullmatch("semi;colon")
    text = compiled_pattern("[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*")
    assert text.fullmatch("emoji \U0001f600 ok")
    assert not text.fullmatch("bell \x07")
    assert compiled_pattern("\\p{Print}+").fullmatch("abc 1")
    assert not compiled_pattern("\\p{Print}+").fullmatch("é")
    assert compiled_pattern("([\\p{L}]*)${1,128}").fullmatch("abc")


def test_untranslatable_java_constructs_are_refused():
    with pytest.raises(ValueError, match="intersection"):
        translate_java_pattern("[a-z&&[^b]]")


def test_every_pattern_of_the_project_services_compiles():
    session = botocore.session.get_session()
    for service in ("sagemaker", "cloudwatch", "s3", "sns", "application-autoscaling", "lambda"):
        model = session.get_service_model(service)
        for name in model.shape_names:
            pattern = model.shape_for(name).metadata.get("pattern")
            if pattern and pattern not in UNTRANSLATABLE_PATTERNS:
                assert compiled_pattern(pattern) is not None, (service, name)


def test_exact_member_names_are_case_sensitive(models):
    sm = models["sagemaker"]
    assert check_exact_member_names(sm, "CreateTrainingJob", _training_job(HyperParameters={"any-key": "1"})) == []
    problems = check_exact_member_names(
        sm, "CreateTrainingJob", _training_job(ResourceConfig={"instanceType": "ml.g5.2xlarge"})
    )
    assert problems == ['The field "instanceType" is not supported by Step Functions (at /ResourceConfig/instanceType)']


# ----- error names


def test_modeled_errors_are_pascal_case_with_exception_suffix(models):
    assert modeled_exception(models["sagemaker"], "ResourceNotFound") == "ResourceNotFound"
    assert step_functions_error("sagemaker", "ResourceNotFound", modeled=True) == "SageMaker.ResourceNotFoundException"
    assert (
        step_functions_error("sagemaker", "ResourceLimitExceeded", True) == "SageMaker.ResourceLimitExceededException"
    )
    assert step_functions_error("s3", "NoSuchKey", True) == "S3.NoSuchKeyException"


def test_unmodeled_errors_are_the_sdk_base_exception(models):
    assert modeled_exception(models["sagemaker"], "ValidationException") is None
    assert modeled_exception(models["sagemaker"], "ThrottlingException") is None
    assert step_functions_error("sagemaker", "ThrottlingException", False) == "SageMaker.AmazonSageMakerException"
    assert step_functions_error("lambda", "ServiceException", False) == "Lambda.AWSLambdaException"
    assert step_functions_error("application-autoscaling", "X", False) == (
        "ApplicationAutoScaling.AWSApplicationAutoScalingException"
    )
    assert set(SERVICE_NAMING) == {"sagemaker", "cloudwatch", "s3", "sns", "application-autoscaling", "lambda"}


def test_sns_modeled_error_code_maps_to_its_shape(models):
    assert modeled_exception(models["sns"], "InvalidParameter") == "InvalidParameterException"


def test_operation_scoped_modeled_errors(models):
    assert modeled_exception(models["sagemaker"], "ResourceNotFound", "DescribeTrainingJob") == "ResourceNotFound"
    assert modeled_exception(models["sagemaker"], "ResourceInUse", "DescribeTrainingJob") is None


def test_cause_is_the_java_sdk_message(models):
    cause = step_functions_cause('Could not find endpoint "x".', "AmazonSageMaker", 400, "ValidationException", "r-1")
    assert cause == (
        'Could not find endpoint "x". (Service: AmazonSageMaker; Status Code: 400; '
        "Error Code: ValidationException; Request ID: r-1; Proxy: null)"
    )
    response = {
        "Error": {"Code": "ValidationException", "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "r"},
    }
    assert name_client_error("sagemaker", models["sagemaker"], response) == (
        "SageMaker.AmazonSageMakerException",
        "m (Service: AmazonSageMaker; Status Code: 400; Error Code: ValidationException; Request ID: r; Proxy: null)",
    )


# ----- IAM


def test_allow_deny_and_implicit_deny():
    evaluator = PolicyEvaluator(
        [
            {"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": f"{SM_ARN}:training-job/*"},
            {"Effect": "Deny", "Action": "sagemaker:DescribeTrainingJob", "Resource": f"{SM_ARN}:training-job/secret"},
        ]
    )
    assert evaluator.is_allowed("sagemaker:DescribeTrainingJob", f"{SM_ARN}:training-job/a")
    assert evaluator.decision("sagemaker:DescribeTrainingJob", f"{SM_ARN}:training-job/secret") == "ExplicitDeny"
    assert evaluator.decision("sagemaker:CreateTrainingJob", f"{SM_ARN}:training-job/a") == "ImplicitDeny"


def test_actions_are_case_insensitive_resources_case_sensitive():
    evaluator = PolicyEvaluator(
        [{"Effect": "Allow", "Action": "SageMaker:describetrainingjob", "Resource": "arn:x:Job?"}]
    )
    assert evaluator.is_allowed("sagemaker:DescribeTrainingJob", "arn:x:Job1")
    assert not evaluator.is_allowed("sagemaker:DescribeTrainingJob", "arn:x:job1")
    assert not evaluator.is_allowed("sagemaker:DescribeTrainingJob", "arn:x:Job12")


def test_not_action_and_not_resource():
    evaluator = PolicyEvaluator(
        [
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::ok/*"},
        ]
    )
    assert evaluator.is_allowed("s3:GetObject", "arn:aws:s3:::ok/key")
    assert not evaluator.is_allowed("s3:GetObject", "arn:aws:s3:::other/key")
    assert not evaluator.is_allowed("iam:PassRole", ROLE)


def test_conditions():
    evaluator = PolicyEvaluator(
        [
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": ROLE,
                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            },
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::b",
                "Condition": {"StringLike": {"s3:prefix": ["models/*"]}, "Bool": {"aws:SecureTransport": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": "*",
                "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:states:*:123456789012:stateMachine:*"}},
            },
            {
                "Effect": "Deny",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"cloudwatch:namespace": "llmq"}},
            },
            {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "sagemaker:AddTags",
                "Resource": "*",
                "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["run_id", "model"]}},
            },
            {
                "Effect": "Allow",
                "Action": "sagemaker:ListTags",
                "Resource": "*",
                "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["run_id"]}},
            },
        ]
    )
    assert evaluator.is_allowed("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not evaluator.is_allowed("iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not evaluator.is_allowed("iam:PassRole", ROLE, {})
    assert evaluator.is_allowed(
        "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "models/x", "aws:SecureTransport": True}
    )
    assert not evaluator.is_allowed(
        "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "other/", "aws:SecureTransport": True}
    )
    assert not evaluator.is_allowed(
        "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "models/x", "aws:SecureTransport": False}
    )
    source = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:m"
    assert evaluator.is_allowed("sns:Publish", "arn:t", {"aws:SourceArn": source})
    assert not evaluator.is_allowed(
        "sns:Publish", "arn:t", {"aws:SourceArn": "arn:aws:states:us-east-1:1:stateMachine:m"}
    )
    assert evaluator.is_allowed("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "llmq"})
    assert not evaluator.is_allowed("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "other"})
    assert evaluator.is_allowed("sagemaker:AddTags", "arn:x", {"aws:TagKeys": ["run_id"]})
    assert not evaluator.is_allowed("sagemaker:AddTags", "arn:x", {"aws:TagKeys": ["run_id", "owner"]})
    assert evaluator.is_allowed("sagemaker:ListTags", "arn:x", {"aws:TagKeys": ["owner", "run_id"]})
    assert not evaluator.is_allowed("sagemaker:ListTags", "arn:x", {"aws:TagKeys": ["owner"]})


def test_unknown_condition_operators_fail_loudly():
    statement = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}
    with pytest.raises(UnsupportedPolicyFeatureError, match="NumericLessThan"):
        PolicyEvaluator([statement])


def test_access_denied_message_is_iams():
    assert access_denied_message(ROLE, "sagemaker:CreateModel", f"{SM_ARN}:model/m", "ImplicitDeny") == (
        f"User: {ROLE} is not authorized to perform: sagemaker:CreateModel on resource: {SM_ARN}:model/m "
        "because no identity-based policy allows the sagemaker:CreateModel action"
    )


def test_required_authorizations_for_create_training_job():
    params = _training_job(Tags=[{"Key": "run_id", "Value": "r"}])
    needed = required_authorizations("sagemaker", "CreateTrainingJob", params, ACCOUNT, REGION)
    job = f"{SM_ARN}:training-job/llmq-dev-llama-8b-run-001-q"
    assert needed == [
        ("sagemaker:CreateTrainingJob", job, {}),
        ("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        ("sagemaker:AddTags", job, {}),
    ]


def test_required_authorizations_resource_types():
    def arns(service, operation, params):
        return [(a, r) for a, r, _ in required_authorizations(service, operation, params, ACCOUNT, REGION)]

    assert arns("sagemaker", "UpdateEndpoint", {"EndpointName": "E", "EndpointConfigName": "C"}) == [
        ("sagemaker:UpdateEndpoint", f"{SM_ARN}:endpoint/e"),
        ("sagemaker:UpdateEndpoint", f"{SM_ARN}:endpoint-config/c"),
    ]
    assert arns("sagemaker", "CreateModel", {"ModelName": "m", "ExecutionRoleArn": ROLE})[1] == ("iam:PassRole", ROLE)
    assert arns("sagemaker", "ListModelPackages", {}) == [("sagemaker:ListModelPackages", "*")]
    assert arns("sagemaker", "CreateModelPackage", {"ModelPackageGroupName": "g"}) == [
        ("sagemaker:CreateModelPackage", f"{SM_ARN}:model-package/g/*")
    ]
    assert arns("s3", "HeadObject", {"Bucket": "b", "Key": "k/x"}) == [("s3:GetObject", "arn:aws:s3:::b/k/x")]
    ((action, bucket, context),) = required_authorizations(
        "s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/"}, ACCOUNT, REGION
    )
    assert (action, bucket, context) == ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "p/"})
    assert arns("lambda", "Invoke", {"FunctionName": "f"}) == [
        ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f")
    ]
    assert arns("cloudwatch", "DescribeAlarms", {"AlarmNamePrefix": "ep-candidate-"}) == [
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:ep-candidate-*")
    ]
    ((_, _, namespace),) = required_authorizations(
        "cloudwatch", "PutMetricData", {"Namespace": "llmq"}, ACCOUNT, REGION
    )
    assert namespace == {"cloudwatch:namespace": "llmq"}
    # SageMaker Runtime: InvokeEndpoint is sagemaker:InvokeEndpoint on the endpoint (lower-cased), whatever variant.
    invoke = {"EndpointName": "Chat", "Body": b"{}", "TargetVariant": "candidate"}
    assert arns("sagemaker-runtime", "InvokeEndpoint", invoke) == [
        ("sagemaker:InvokeEndpoint", f"{SM_ARN}:endpoint/chat")
    ]
    assert arns("sagemaker-runtime", "InvokeEndpointWithResponseStream", invoke) == [
        ("sagemaker:InvokeEndpointWithResponseStream", f"{SM_ARN}:endpoint/chat"),
        ("sagemaker:InvokeEndpoint", f"{SM_ARN}:endpoint/chat"),
    ]


def test_invoke_endpoint_without_the_permission_is_access_denied(models):
    runtime = botocore.session.get_session().get_service_model("sagemaker-runtime")
    role = PolicyEvaluator(
        [{"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": f"{SM_ARN}:endpoint/llmq-dev-chat"}],
        name=ROLE,
    )
    invoke = {"EndpointName": "llmq-dev-chat", "Body": b"{}", "TargetVariant": "candidate"}
    assert hook.check_call(role, runtime, "InvokeEndpoint", invoke, account=ACCOUNT, region=REGION) is None
    denied = hook.check_call(
        role, runtime, "InvokeEndpoint", dict(invoke, EndpointName="other"), account=ACCOUNT, region=REGION
    )
    assert denied is not None
    assert "not authorized to perform: sagemaker:InvokeEndpoint" in str(denied)


def test_unknown_operations_have_no_rule():
    with pytest.raises(NoAuthorizationRuleError, match="no authorization rule for sagemaker:DeleteEndpoint"):
        required_authorizations("sagemaker", "DeleteEndpoint", {"EndpointName": "e"}, ACCOUNT, REGION)


def test_policies_of_role_collects_inline_and_attached_policies():
    templates = {
        "a": {
            "Resources": {
                "Role": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "RoleName": "r",
                        "Policies": [
                            {"PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "x:A", "Resource": "*"}]}}
                        ],
                    },
                },
                "Attached": {
                    "Type": "AWS::IAM::Policy",
                    "Properties": {
                        "Roles": [{"Ref": "Role"}],
                        "PolicyDocument": {
                            "Statement": {
                                "Effect": "Allow",
                                "Action": "x:B",
                                "Resource": {"Fn::GetAtt": ["Role", "Arn"]},
                            }
                        },
                    },
                },
                "Other": {
                    "Type": "AWS::IAM::Policy",
                    "Properties": {"Roles": ["someone-else"], "PolicyDocument": {"Statement": [{"Action": "x:C"}]}},
                },
            }
        }
    }
    statements = policies_of_role(templates, "a", "Role")
    assert [s["Action"] for s in statements] == ["x:A", "x:B"]
    assert statements[1]["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/r"


# ----- the hook


@pytest.fixture
def emulated(monkeypatch):
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):  # type: ignore[call-overload]
        yield


def test_hook_validates_then_authorizes_then_records(monkeypatch, emulated):
    calls: list[hook.CallRecord] = []
    hook.install(monkeypatch, record=calls)
    sm = boto3.client("sagemaker", region_name=REGION)
    role = PolicyEvaluator(
        [{"Effect": "Allow", "Action": "sagemaker:DescribeEndpoint", "Resource": f"{SM_ARN}:endpoint/*"}], name=ROLE
    )
    with hook.acting_as(role):
        with pytest.raises(ClientError) as invalid:
            sm.describe_endpoint(EndpointName="x" * 64)
        assert invalid.value.response["Error"]["Code"] == "ValidationException"
        assert invalid.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert invalid.value.response["Error"]["Message"].startswith("2 validation errors detected: Value 'xxx")
        with pytest.raises(ClientError) as denied:
            sm.describe_training_job(TrainingJobName="job")
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert denied.value.response["Error"]["Message"] == access_denied_message(
            ROLE, "sagemaker:DescribeTrainingJob", f"{SM_ARN}:training-job/job", "ImplicitDeny"
        )
        with pytest.raises(ClientError) as missing:
            sm.describe_endpoint(EndpointName="nope")
        assert missing.value.response["Error"]["Code"] != "AccessDeniedException"  # moto answered
    assert [(c.operation, c.principal) for c in calls] == [("DescribeEndpoint", ROLE)]
    sm.describe_training_job  # noqa: B018 - without a principal nothing is checked:
    with pytest.raises(ClientError) as unrestricted:
        sm.describe_training_job(TrainingJobName="job")
    assert unrestricted.value.response["Error"]["Code"] != "AccessDeniedException"


def _run(definition, role_arn=f"arn:aws:iam::{ACCOUNT}:role/sfn"):
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=role_arn)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return described


def _task(resource, parameters):
    return {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": True}},
    }


SFN_ROLE = PolicyEvaluator(
    [{"Effect": "Allow", "Action": "sagemaker:DescribeTrainingJob", "Resource": f"{SM_ARN}:training-job/*"}],
    name=f"arn:aws:sts::{ACCOUNT}:assumed-role/sfn/session",
)


@pytest.fixture
def sfn_checked(monkeypatch, emulated):
    calls: list[hook.CallRecord] = []
    hook.install(monkeypatch, record=calls)
    hook.install_step_functions_principal(monkeypatch, SFN_ROLE)
    return calls


def test_state_machine_mis_cased_parameter_fails_the_task(sfn_checked):
    result = _run(_task("arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob", {"trainingJobName": "j"}))
    assert result["status"] == "FAILED"
    assert result["error"] == "States.Runtime"
    assert 'The field "trainingJobName" is not supported by Step Functions' in result["cause"]
    assert sfn_checked == []


def test_state_machine_too_long_parameter_fails_like_sagemaker(sfn_checked):
    result = _run(_task("arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob", {"TrainingJobName": "j" * 64}))
    assert result["status"] == "FAILED"
    assert result["error"] == "SageMaker.AmazonSageMakerException"
    assert "failed to satisfy constraint: Member must have length less than or equal to 63" in result["cause"]
    assert (
        "(Service: AmazonSageMaker; Status Code: 400; Error Code: ValidationException; Request ID: " in result["cause"]
    )


def test_state_machine_role_without_the_permission_is_denied(sfn_checked):
    result = _run(_task("arn:aws:states:::aws-sdk:sagemaker:describeEndpoint", {"EndpointName": "e"}))
    assert result["status"] == "FAILED"
    assert result["error"] == "SageMaker.AmazonSageMakerException"
    assert result["cause"].startswith(
        f"User: {SFN_ROLE.name} is not authorized to perform: sagemaker:DescribeEndpoint on resource: "
        f"{SM_ARN}:endpoint/e because no identity-based policy allows the sagemaker:DescribeEndpoint action"
    )
    assert "Error Code: AccessDeniedException" in result["cause"]


def test_state_machine_allowed_call_reaches_moto_and_names_its_error(sfn_checked):
    result = _run(_task("arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob", {"TrainingJobName": "missing"}))
    assert [(c.operation, c.principal) for c in sfn_checked] == [("DescribeTrainingJob", SFN_ROLE.name)]
    assert result["status"] == "FAILED"
    assert result["error"].startswith("SageMaker.")  # moto's error, named the Step Functions way
    assert "(Service: AmazonSageMaker; Status Code: " in result["cause"]


def test_a_task_result_over_the_payload_quota_fails_the_execution_even_when_caught_with_states_all(
    monkeypatch, emulated
):
    """Step Functions applies its 256 KiB quota to a task's result before ResultSelector, and States.ALL does
    not catch the States.DataLimitExceeded that follows (moto's wildcard catches it)."""
    from tests.workflow.harness import PAYLOAD_LIMIT_BYTES, install_string_bodies, run_execution

    install_string_bodies(monkeypatch)
    hook.install_uncatchable_errors(monkeypatch)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="payload-test")
    body = json.dumps({"ok": True, "pad": "x" * PAYLOAD_LIMIT_BYTES}).encode()
    s3.put_object(Bucket="payload-test", Key="big.json", Body=body)
    s3.put_object(Bucket="payload-test", Key="small.json", Body=b'{"ok": true}')
    sfn = boto3.client("stepfunctions", region_name=REGION)

    def read(key: str) -> str:
        machine = _task("arn:aws:states:::aws-sdk:s3:getObject", {"Bucket": "payload-test", "Key": key})
        machine["States"]["T"]["ResultSelector"] = {"ok.$": "States.StringToJson($.Body)"}
        machine["States"]["T"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]
        machine["States"]["Caught"] = {"Type": "Succeed"}
        return sfn.create_state_machine(
            name=key.replace(".", "-"), definition=json.dumps(machine), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]

    small = run_execution(sfn, read("small.json"), {}, name="small")
    assert small.status == "SUCCEEDED" and small.output == {"ok": {"ok": True}}
    big = run_execution(sfn, read("big.json"), {}, name="big")
    assert big.status == "FAILED"
    assert big.error == "States.DataLimitExceeded"


def test_the_harness_fails_an_execution_whose_history_carries_an_oversized_payload():
    from tests.workflow.harness import PAYLOAD_LIMIT_BYTES, oversized_payloads

    small = {"id": 1, "type": "TaskSucceeded", "taskSucceededEventDetails": {"output": "{}"}}
    big = {"id": 2, "type": "PassStateExited", "stateExitedEventDetails": {"output": "é" * PAYLOAD_LIMIT_BYTES}}
    assert oversized_payloads([small]) == []
    # UTF-8 bytes, not characters.
    assert oversized_payloads([small, big]) == [f"event 2 PassStateExited output: {2 * PAYLOAD_LIMIT_BYTES} bytes"]
