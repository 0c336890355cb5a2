"""Executed scenarios: the synthesized state machine runs in moto; assertions are on the resources."""

from __future__ import annotations

import json

from tests.workflow.conftest import BASELINE_CONFIG, BASELINE_ENDPOINT, BASELINE_MODEL, SERVING_VARIANT
from tests.workflow.harness import run_execution

CANDIDATE_MODEL = "llmq-dev-llama-8b-run-001-candidate"
TRAINING_JOB = "llmq-dev-llama-8b-run-001-q"
CANARY_CONFIG = "llmq-dev-llama-8b-run-001"
PROMOTED_CONFIG = "llmq-dev-llama-8b-run-001-promoted"
GROUP = "llmq-dev-llama-8b"


def _packages(account):
    summaries = account.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return [account.sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]


def _weights_set(account):
    return [
        {w["VariantName"]: w["DesiredWeight"] for w in call["desired_weights_and_capacities"]}
        for call in account.calls.of("update_endpoint_weights_and_capacities")
    ]


def _phases_tagged(account):
    """llmq:phase values the state machine wrote, in order."""
    return [
        tag["Value"]
        for call in account.calls.checked
        if call.operation == "AddTags"
        for tag in call.params["Tags"]
        if tag["Key"] == "llmq:phase"
    ]


def _no_endpoint_change(account):
    endpoint = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    assert endpoint["EndpointConfigName"] == BASELINE_CONFIG
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == ["AllTraffic"]
    names = account.calls.names()
    assert "update_endpoint" not in names
    assert "update_endpoint_weights_and_capacities" not in names
    assert "create_endpoint_config" not in names


def test_happy_path_quantizes_registers_canaries_step_by_step_and_promotes(account):
    synthesized = account.synthesized
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="happy")

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["outcome"] == "promoted"
    # Quantize: the training job as the contract asks (image, channels, VPC, KMS, limits, network isolation).
    job = account.sagemaker.describe_training_job(TrainingJobName=TRAINING_JOB)
    assert job["AlgorithmSpecification"]["TrainingImage"] == synthesized.training_image
    # The default is containers/quantize built as a CDK image asset (stacks/job_images.py).
    assert synthesized.training_image.startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/cdk-")
    assert "container-assets" in synthesized.training_image
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels == {
        "model": f"s3://{synthesized.bucket}/sources/llama-8b/",
        "calibration": f"s3://{synthesized.bucket}/datasets/calibration/",
        # For the manifest's calibration fitness report only (jobs/quantize/fitness.py).
        "validation": account.spec()["validation_uri"],
    }
    assert job["VpcConfig"] == {"SecurityGroupIds": [synthesized.security_group], "Subnets": synthesized.subnets}
    assert len(synthesized.subnets) == 2
    assert job["OutputDataConfig"]["KmsKeyId"] == synthesized.key_arn
    # ml.g5 has NVMe instance storage: SageMaker refuses a volume key there (the harness enforces it).
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.4xlarge"
    assert "VolumeKmsKeyId" not in job["ResourceConfig"]
    # Sized by quantize_sizing: 8.03B bf16 source + 4-bit artifact + 10 GiB, at least 50.
    assert job["ResourceConfig"]["VolumeSizeInGB"] == 50
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{synthesized.bucket}/models/llama-8b/run-001/"
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 8 * 3600
    assert job["HyperParameters"] == {
        "algorithm": "gptq",
        "scheme": "W4A16",
        "group-size": "128",
        "num-calibration-samples": "256",
        "max-seq-length": "2048",
        "seed": "0",
        "ignore": "lm_head",
    }
    # Record: one package, approved at the end, with the manifest's metadata and metrics.
    (package,) = _packages(account)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ModelPackageDescription"].endswith("[run_id=run-001]")
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{synthesized.bucket}/models/llama-8b/run-001/manifest.json"
    )
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == synthesized.serving_image
    assert "djl-inference" in synthesized.serving_image
    manifest = account.s3.get_object(Bucket=synthesized.bucket, Key="models/llama-8b/run-001/manifest.json")
    assert json.loads(manifest["Body"].read())["quantization"]["scheme"] == "W4A16"
    # Deploy: the serving variant copied whole (its name and weight kept) beside the candidate at weight 0.
    canary = account.sagemaker.describe_endpoint_config(EndpointConfigName=CANARY_CONFIG)
    variants = {v["VariantName"]: v for v in canary["ProductionVariants"]}
    assert list(variants) == [SERVING_VARIANT, "candidate"]
    assert variants[SERVING_VARIANT]["ModelName"] == BASELINE_MODEL
    assert variants[SERVING_VARIANT]["InstanceType"] == "ml.g4dn.12xlarge"
    assert variants[SERVING_VARIANT]["InitialInstanceCount"] == 2
    assert variants["candidate"]["ModelName"] == CANDIDATE_MODEL
    (variants_request,) = account.calls.of("create_endpoint_config")[:1]
    candidate = variants_request["production_variants"][1]
    # The LMI image is CUDA 13 (cu130): the AMI whose driver (580) runs it, derived from the image tag.
    assert candidate["InferenceAmiVersion"] == "al2023-ami-sagemaker-inference-gpu-4-1"
    assert candidate["ContainerStartupHealthCheckTimeoutInSeconds"] == 3600
    assert candidate["ModelDataDownloadTimeoutInSeconds"] == 3600
    assert (variants[SERVING_VARIANT]["InitialVariantWeight"], variants["candidate"]["InitialVariantWeight"]) == (1, 0)
    # Both variants run on NVMe instances (g4dn): no KmsKeyId, which SageMaker would refuse.
    assert "KmsKeyId" not in canary
    model = account.sagemaker.describe_model(ModelName=CANDIDATE_MODEL)
    assert model["PrimaryContainer"]["Image"] == synthesized.serving_image
    # The deployment kept the serving fleet's instance count and took weights from the config.
    (deploy, promote) = account.calls.of("update_endpoint")
    assert deploy["endpoint_config_name"] == CANARY_CONFIG
    assert deploy["retain_all_variant_properties"] is True
    assert promote["endpoint_config_name"] == PROMOTED_CONFIG
    # Evaluate, after the deployment: a client of the endpoint, in the VPC without network isolation, as its
    # own role, reading the two configs, the manifest and the validation set (no weights).
    entered = execution.states_entered()
    order = ("Deploy canary", "Tag endpoint evaluating", "Create evaluate job", "Gate passed?", "Tag endpoint canary")
    assert [entered.index(state) for state in order] == sorted(entered.index(state) for state in order)
    assert entered.index("Tag endpoint canary") < entered.index("Set canary weights")
    (evaluate,) = account.calls.of("create_processing_job")
    assert evaluate["role_arn"] == synthesized.evaluate_role_arn != synthesized.sagemaker_role_arn
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in evaluate["processing_inputs"]}
    bucket = synthesized.bucket
    assert inputs == {
        "baseline": f"s3://{bucket}/sources/llama-8b/config.json",
        "candidate": f"s3://{bucket}/models/llama-8b/run-001/{TRAINING_JOB}/output/model/config.json",
        "manifest": f"s3://{bucket}/models/llama-8b/run-001/manifest.json",
        "validation": f"s3://{bucket}/datasets/validation/",
    }
    assert evaluate["network_config"]["EnableNetworkIsolation"] is False
    assert evaluate["network_config"]["VpcConfig"]["Subnets"] == synthesized.subnets
    # A right-sized CPU client (moto's backend drops ProcessingResources: read the request as checked).
    (request,) = [c.params for c in account.calls.checked if c.operation == "CreateProcessingJob"]
    cluster = request["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == "ml.m5.xlarge"
    assert cluster["VolumeKmsKeyId"] == synthesized.key_arn  # m5 is EBS-only
    args = evaluate["app_specification"]["ContainerArguments"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert (flags["--baseline-endpoint"], flags["--baseline-variant"]) == (BASELINE_ENDPOINT, SERVING_VARIANT)
    assert (flags["--candidate-endpoint"], flags["--candidate-variant"]) == (BASELINE_ENDPOINT, "candidate")
    assert (flags["--region"], flags["--measured-instance-type"]) == ("us-east-1", "ml.g4dn.2xlarge")
    # The job reached both variants by TargetVariant while the candidate served no user (weight 0).
    assert [(i.target_variant, i.served_by, i.weight) for i in account.shims.invocations] == [
        (SERVING_VARIANT, SERVING_VARIANT, 1.0),
        ("candidate", "candidate", 0.0),
    ]
    # Bake: the first step set the first weights (the candidate was at 0), then every step in order.
    assert _weights_set(account) == [
        {SERVING_VARIANT: 90, "candidate": 10},
        {SERVING_VARIANT: 50, "candidate": 50},
        {SERVING_VARIANT: 0, "candidate": 100},
    ]
    assert _phases_tagged(account) == ["evaluating", "canary", "promoted"]
    # Promote: the serving variant (its name kept) now runs the candidate's model; no second fleet.
    endpoint = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    assert endpoint["EndpointConfigName"] == PROMOTED_CONFIG
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == [SERVING_VARIANT]
    promoted = account.sagemaker.describe_endpoint_config(EndpointConfigName=PROMOTED_CONFIG)
    assert promoted["ProductionVariants"][0]["ModelName"] == CANDIDATE_MODEL
    tags = account.endpoint_tags()
    assert tags["llmq:phase"] == "promoted"
    assert tags["llmq:run-id"] == "run-001"
    assert tags["llmq:model-name"] == "llama-8b"
    assert tags["llmq:model-package-arn"] == package["ModelPackageArn"]
    assert tags["llmq:last-approved-config"] == BASELINE_CONFIG
    assert tags["llmq:promoted-at"].startswith("20")
    # Every call went through the AWS conformance checks, as the role that really makes it.
    principals = {call.principal.rsplit("/", 1)[-1] for call in account.calls.checked}
    assert any(p.startswith("StateMachineRole") for p in principals), principals
    assert any(p.startswith("CanaryGuardRole") for p in principals), principals
    (message,) = account.notifications()
    assert message["outcome"] == "promoted"
    assert message["model_package_arn"] == package["ModelPackageArn"]


def test_recipe_auto_passes_the_search_to_the_quantize_job_and_records_the_package(account):
    """``recipe: auto``: the training job gets the recipe and its budget instead of an algorithm,
    the manifest names the algorithm "auto" as the run plan does, and the record step accepts it."""
    # W8A8: sized for SmoothQuant-GPTQ, which the default quantize instance holds (W4A16 would
    # be sized for AWQ, which it does not hold at 8B).
    spec = account.spec(recipe="auto", scheme="W8A8", group_size=None, search_budget_minutes=30, run_id="run-auto")
    spec.pop("algorithm")
    execution = run_execution(account.sfn, account.state_machine_arn, spec, name="recipe-auto")
    assert execution.status == "SUCCEEDED", execution.cause
    job = account.sagemaker.describe_training_job(TrainingJobName="llmq-dev-llama-8b-run-auto-q")
    hyperparameters = job["HyperParameters"]
    assert hyperparameters["recipe"] == "auto" and hyperparameters["search-budget-seconds"] == "1800"
    assert "algorithm" not in hyperparameters
    assert any("W8A8 (auto, group None)" in p["ModelPackageDescription"] for p in _packages(account))


def test_failed_quantize_job_fails_the_execution_with_its_reason_and_touches_no_endpoint(account):
    account.faults.training_failure = "AlgorithmError: group_size 128 does not divide in_features 576"
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="quantize-fails")

    assert execution.status == "FAILED"
    assert execution.error == "QuantizeJobFailed"
    assert execution.cause == "AlgorithmError: group_size 128 does not divide in_features 576"
    assert "Record model package" not in execution.states_entered()
    _no_endpoint_change(account)
    assert account.sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    (message,) = account.notifications()
    assert (message["outcome"], message["error"]) == ("failed", "QuantizeJobFailed")


def _candidate_removed(account, *, error: str) -> dict:
    """The rollback after the weight-0 deployment: the endpoint back on its own config, nothing left billing."""
    # The endpoint had changed (the candidate joined at weight 0); it went back to its own config.
    assert [c["endpoint_config_name"] for c in account.calls.of("update_endpoint")] == [CANARY_CONFIG, BASELINE_CONFIG]
    endpoint = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    assert endpoint["EndpointConfigName"] == BASELINE_CONFIG
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == [SERVING_VARIANT]
    # No user ever saw the candidate: it never had a weight above 0.
    assert all(weights.get("candidate", 0) == 0 for weights in _weights_set(account))
    assert "Tag endpoint canary" not in _phases_tagged(account)
    assert _phases_tagged(account) == ["evaluating", "rolled-back"]
    (package,) = _packages(account)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"
    billed = account.instance_seconds("candidate")
    account.shims.timeline.advance(24 * 3600)
    assert account.instance_seconds("candidate") == billed  # nothing left billing
    (message,) = account.notifications()
    assert (message["outcome"], message["reason"]) == ("rolled-back", error)
    return dict(message)


def test_failed_gate_after_the_weight_0_deploy_removes_the_candidate_and_rejects_the_package(account):
    account.faults.gate_passed = False
    account.faults.gate_reasons = ["perplexity +9.1 % exceeds 5.0 %"]
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="gate-fails")

    assert execution.status == "FAILED"
    assert execution.error == "GateFailed"
    assert "perplexity +9.1 % exceeds 5.0 %" in execution.cause
    message = _candidate_removed(account, error="GateFailed")
    assert "perplexity +9.1 %" in message["cause"]
    # The run's artifacts stay where they are.
    listed = account.s3.list_objects_v2(Bucket=account.synthesized.bucket, Prefix="models/llama-8b/run-001/")
    keys = {o["Key"] for o in listed["Contents"]}
    assert "models/llama-8b/run-001/manifest.json" in keys
    assert "models/llama-8b/run-001/reports/report.json" in keys


def test_failed_evaluate_job_removes_the_candidate_and_rejects_the_package(account):
    account.faults.processing_failure = "load test: 37 of 200 requests to variant candidate failed (ModelError)"
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="evaluate-fails")

    assert execution.status == "FAILED"
    assert execution.error == "EvaluateJobFailed"
    # The container's own words (ExitMessage), not SageMaker's generic FailureReason.
    assert execution.cause == account.faults.processing_failure
    assert "Read gate" not in execution.states_entered()
    _candidate_removed(account, error="EvaluateJobFailed")


def test_rollback_function_leaves_an_alarm_of_the_evaluations_load_test_to_the_state_machine(account):
    """Phase evaluating: the candidate serves no user; its alarm during the load test rolls nothing back."""
    account.faults.alarm_during_evaluation = f"{BASELINE_ENDPOINT}-candidate-latency-p95-vs-baseline"
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="load-test-alarm")

    (handled,) = account.shims.rollback_results
    assert handled["outcome"] == "ignored", handled
    assert handled["phase"] == "evaluating"
    # The endpoint was left alone: no rollback record, no traffic moved, and the gate decided.
    listed = account.s3.list_objects_v2(Bucket=account.synthesized.bucket, Prefix="models/llama-8b/run-001/rollbacks/")
    assert listed.get("KeyCount", 0) == 0
    assert execution.status == "SUCCEEDED", execution.cause
    # The bake's checks look back to the canary's start, after the gate: the load test's alarm is not its.
    assert execution.output["outcome"] == "promoted"
    assert _phases_tagged(account) == ["evaluating", "canary", "promoted"]


def test_candidate_alarm_during_second_canary_step_rolls_back_to_the_baseline_only_config(account):
    account.faults.alarm_name = f"{BASELINE_ENDPOINT}-candidate-5xx"
    account.faults.alarm_at_candidate_weight = 50
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="alarm")

    assert execution.status == "FAILED"
    assert execution.error == "CanaryAlarm"
    assert f"{BASELINE_ENDPOINT}-candidate-5xx" in execution.cause
    # Weights went 10 -> 50, then back to 0; never to 100.
    assert _weights_set(account) == [
        {SERVING_VARIANT: 90, "candidate": 10},
        {SERVING_VARIANT: 50, "candidate": 50},
        {SERVING_VARIANT: 100, "candidate": 0},
    ]
    # Then the endpoint went back to its own config: the candidate fleet is gone, not idling at 0 %.
    assert [c["endpoint_config_name"] for c in account.calls.of("update_endpoint")] == [CANARY_CONFIG, BASELINE_CONFIG]
    endpoint = account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)
    assert endpoint["EndpointConfigName"] == BASELINE_CONFIG
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == [SERVING_VARIANT]
    (package,) = _packages(account)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert account.endpoint_tags()["llmq:phase"] == "rolled-back"
    (message,) = account.notifications()
    assert message["outcome"] == "rolled-back"
    assert message["reason"] == "CanaryAlarm"
    assert "candidate-5xx" in message["cause"]


def test_throttled_sagemaker_call_is_retried_and_the_run_succeeds(account):
    account.faults.throttle_once = {"create_training_job"}
    execution = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="throttled")

    assert execution.status == "SUCCEEDED", execution.cause
    assert account.calls.throttled == ["create_training_job"]
    # Step Functions names SageMaker's unmodeled throttling error after the SDK's base exception.
    assert "SageMaker.AmazonSageMakerException" in execution.task_failures()
    assert len(account.calls.of("create_training_job")) == 1
    assert execution.states_entered().count("Create training job") == 1  # one state entry, two attempts


def test_invalid_input_fails_at_validation_listing_every_problem_and_creates_nothing(account):
    spec = account.spec(
        model_name="Llama_8B",
        source_model_uri="s3://someone-elses-bucket/llama/",
        algorithm="awq",
        scheme="W8A8",
        baseline_endpoint="llmq-dev-unmonitored",
        canary=[{"weight": 50, "bake_minutes": 10}, {"weight": 20, "bake_minutes": 10}],
    )
    execution = run_execution(account.sfn, account.state_machine_arn, spec, name="invalid")

    assert execution.status == "FAILED"
    assert execution.error == "InvalidInput"
    for field in ("model_name", "source_model_uri", "scheme", "baseline_endpoint", "canary"):
        assert f"{field}:" in execution.cause, field
    assert execution.states_entered()[-1] == "Failed"
    assert account.calls.sagemaker == []
    assert account.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    assert account.sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    _no_endpoint_change(account)


def test_same_run_executed_twice_creates_nothing_twice(account):
    first = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="first")
    assert first.status == "SUCCEEDED", first.cause
    created_before = account.sagemaker.describe_training_job(TrainingJobName=TRAINING_JOB)["CreationTime"]
    calls_before = list(account.calls.names())

    second = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="second")

    assert second.status == "SUCCEEDED", second.cause
    assert second.output["outcome"] == "already-decided"
    new_calls = account.calls.names()[len(calls_before) :]
    assert [c for c in new_calls if c.startswith("create")] == []
    assert "update_endpoint" not in new_calls
    assert account.sagemaker.describe_training_job(TrainingJobName=TRAINING_JOB)["CreationTime"] == created_before
    assert len(account.sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1
    assert len(_packages(account)) == 1
    assert account.sagemaker.describe_endpoint(EndpointName=BASELINE_ENDPOINT)["EndpointConfigName"] == PROMOTED_CONFIG


def test_run_interrupted_after_quantize_resumes_without_recreating_the_job(account):
    """A rerun after a failure late in the run reuses the training job and the package."""
    account.faults.gate_passed = False
    account.faults.gate_reasons = ["flaky evaluation"]
    first = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="first")
    assert first.error == "GateFailed"
    second = run_execution(account.sfn, account.state_machine_arn, account.spec(), name="second")
    # The package was rejected: the run is decided and nothing is created again.
    assert second.output["outcome"] == "already-decided"
    assert len(account.calls.of("create_training_job")) == 1
    assert len(account.calls.of("create_processing_job")) == 1
    assert len(_packages(account)) == 1
