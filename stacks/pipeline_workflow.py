"""The per-model workflow: validate -> quantize -> record -> evaluate -> gate -> canary -> promote or roll back.

Built from CDK task classes. SageMaker calls go through ``CallAwsService``
(AWS SDK integrations) rather than the optimized ``sagemaker:*`` tasks: those
have no ``.sync`` for endpoint updates, and SDK calls with a Describe + Wait
loop are what can be executed in the emulator the tests use. Every name and URI
comes from the run plan that the validate function returns (``$.run``), so the
definition itself holds only infrastructure (roles, key, subnets, bucket).

Idempotency: every SageMaker resource is looked up before it is created
(Describe -> "not found" -> Create); the name derives from ``run_id``. A run
whose model package was already approved or rejected stops after the record step.

Error handling: each Task retries throttling and 5xx errors (exponential
backoff, full jitter, bounded) and catches everything else into one of three
paths, chosen by how far the run got:

- before a model package exists: notify, fail;
- after the package, before the endpoint changes: reject the package, notify, fail;
- once the endpoint changed: restore the baseline to 100 % (weights, or the
  last approved endpoint config), tag the endpoint ``rolled-back``, reject the
  package, notify, fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

J = sfn.JsonPath
# Error codes that mean "try again later" in the AWS APIs this workflow calls
# (throttling and 5xx). Step Functions names SDK errors <Service>.<Code>, with an
# "Exception" suffix added where the code lacks one.
TRANSIENT_CODES = (
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
)
SERVICE_ERROR_NAMES = {"sagemaker": "SageMaker", "cloudwatch": "CloudWatch", "s3": "S3", "sns": "SNS"}
NOT_FOUND_PATTERNS = ("*ould not find*", "*not found*", "*does not exist*")
PENDING = "PendingManualApproval"


def transient_errors(service: str) -> list[str]:
    """The Step Functions error names of throttling/5xx for one service, deduplicated."""
    pascal = SERVICE_ERROR_NAMES[service]
    names = [f"{pascal}.{code if code.endswith('Exception') else code + 'Exception'}" for code in TRANSIENT_CODES]
    return list(dict.fromkeys(names))


def add_transient_retry(task: sfn.TaskStateBase, service: str) -> None:
    task.add_retry(
        errors=transient_errors(service),
        interval=Duration.seconds(2),
        backoff_rate=2.0,
        max_attempts=5,
        max_delay=Duration.seconds(60),
        jitter_strategy=sfn.JitterType.FULL,
    )


class PipelineWorkflow(Construct):
    """States of the per-model pipeline; ``self.start`` is the definition's first state."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_prefix: str,
        endpoints: Sequence[str],
        bucket: s3.IBucket,
        key: kms.IKey,
        sagemaker_role: iam.IRole,
        subnets: Sequence[ec2.ISubnet],
        security_group: ec2.ISecurityGroup,
        validate_function: lambda_.IFunction,
        record_function: lambda_.IFunction,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)
        self._prefix = resource_prefix
        self._endpoint_names = list(endpoints) or [f"{resource_prefix}-*"]
        self._bucket = bucket
        self._key = key
        self._role = sagemaker_role
        self._subnet_ids = [subnet.subnet_id for subnet in subnets]
        self._security_group = security_group
        self._topic = topic

        self._build_failure_paths()
        self.start = self._build(validate_function, record_function)

    # ----- ARNs (IAM scope: names start with the stage prefix, endpoints are the monitored ones)

    def _arn(self, resource: str, name: str, service: str = "sagemaker") -> str:
        return self._stack.format_arn(service=service, resource=resource, resource_name=name)

    def _prefixed(self, resource: str) -> list[str]:
        return [self._arn(resource, f"{self._prefix}-*")]

    def _endpoint_arns(self) -> list[str]:
        return [self._arn("endpoint", name) for name in self._endpoint_names]

    def _alarm_arns(self) -> list[str]:
        return [
            self._stack.format_arn(
                service="cloudwatch",
                resource="alarm",
                resource_name=f"{name}-*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for name in self._endpoint_names
        ]

    # ----- building blocks

    def _call(
        self,
        state_id: str,
        service: str,
        action: str,
        parameters: dict[str, Any],
        *,
        resources: list[str],
        result_selector: dict[str, Any] | None = None,
        result_path: str | None = None,
        iam_action: str | None = None,
    ) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self,
            state_id,
            service=service,
            action=action,
            parameters=parameters,
            iam_resources=resources,
            iam_action=iam_action,
            result_selector=result_selector,
            # Responses carry timestamps and more than the next state needs: results
            # are either selected or discarded, never stored whole.
            result_path=result_path if result_path is not None else J.DISCARD,
        )
        add_transient_retry(task, service)
        return task

    def _catch(self, task: sfn.TaskStateBase, handler: sfn.IChainable) -> None:
        task.add_catch(handler, errors=[sfn.Errors.ALL], result_path="$.error")

    def _ensure(
        self,
        name: str,
        *,
        describe: tasks.CallAwsService,
        create: tasks.CallAwsService,
        then: sfn.IChainable,
        on_error: sfn.IChainable,
    ) -> sfn.IChainable:
        """Describe -> (found: then) / (not found: create -> then) / (other error: on_error)."""
        lookup = f"$.lookups.{name}"
        exists = sfn.Choice(self, f"{name} exists?")
        to_error = sfn.Pass(self, f"{name} lookup failed", input_path=lookup, result_path="$.error")
        describe.add_catch(exists, errors=[sfn.Errors.ALL], result_path=lookup)
        self._catch(create, on_error)
        not_found = sfn.Condition.or_(
            *[sfn.Condition.string_matches(f"{lookup}.Cause", pattern) for pattern in NOT_FOUND_PATTERNS]
        )
        exists.when(sfn.Condition.is_present(f"{lookup}.found"), then)
        exists.when(
            sfn.Condition.and_(sfn.Condition.is_present(f"{lookup}.Cause"), not_found),
            create.next(then),
        )
        exists.otherwise(to_error.next(on_error))
        return describe.next(exists)

    def _poll(
        self,
        name: str,
        *,
        describe: tasks.CallAwsService,
        status_path: str,
        done_status: str,
        failed_status: Sequence[str],
        max_polls_path: str,
        wait_seconds_path: str,
        done: sfn.IChainable,
        failed: sfn.IChainable,
        timed_out: sfn.IChainable,
        on_error: sfn.IChainable,
        counter_root: str = "$.polls",
    ) -> sfn.IChainable:
        """Describe until ``done_status`` (Describe + Wait: no ``.sync``), bounded by a poll count."""
        counter = f"{counter_root}.{name}"
        start = sfn.Pass(self, f"{name} start polling", result=sfn.Result.from_object({"n": 0}), result_path=counter)
        wait = sfn.Wait(self, f"{name} wait", time=sfn.WaitTime.seconds_path(wait_seconds_path))
        count = sfn.Pass(
            self,
            f"{name} count poll",
            parameters={"n": J.math_add(J.number_at(f"{counter}.n"), 1)},
            result_path=counter,
        )
        check = sfn.Choice(self, f"{name} status?")
        self._catch(describe, on_error)
        check.when(sfn.Condition.string_equals(status_path, done_status), done)
        check.when(
            sfn.Condition.or_(*[sfn.Condition.string_equals(status_path, status) for status in failed_status]), failed
        )
        check.when(sfn.Condition.number_greater_than_equals_json_path(f"{counter}.n", max_polls_path), timed_out)
        check.otherwise(wait.next(count).next(describe))
        start.next(describe).next(check)
        return start

    def _error(self, state_id: str, error: str, cause: str) -> sfn.Pass:
        return sfn.Pass(
            self, state_id, result=sfn.Result.from_object({"Error": error, "Cause": cause}), result_path="$.error"
        )

    def _tags(self, phase: str) -> list[dict[str, Any]]:
        return [
            {"Key": "llmq:phase", "Value": phase},
            {"Key": "llmq:model-name", "Value": J.string_at("$.run.model_name")},
            {"Key": "llmq:run-id", "Value": J.string_at("$.run.run_id")},
            {"Key": "llmq:model-package-arn", "Value": J.string_at("$.record.model_package_arn")},
        ]

    def _tag_endpoint(self, state_id: str, phase: str, *, last_approved: bool = False) -> tasks.CallAwsService:
        tags = self._tags(phase)
        if last_approved:
            tags.append({"Key": "llmq:last-approved-config", "Value": J.string_at("$.endpoint.config")})
        return self._call(
            state_id,
            "sagemaker",
            "addTags",
            {"ResourceArn": J.string_at("$.endpoint.arn"), "Tags": tags},
            resources=self._endpoint_arns(),
        )

    def _set_weights(self, state_id: str, candidate: Any, baseline: Any, endpoint: Any) -> tasks.CallAwsService:
        return self._call(
            state_id,
            "sagemaker",
            "updateEndpointWeightsAndCapacities",
            {
                "EndpointName": endpoint,
                "DesiredWeightsAndCapacities": [
                    {"VariantName": "baseline", "DesiredWeight": baseline},
                    {"VariantName": "candidate", "DesiredWeight": candidate},
                ],
            },
            resources=self._endpoint_arns(),
        )

    def _describe_endpoint(self, state_id: str, endpoint: Any, result_path: str) -> tasks.CallAwsService:
        return self._call(
            state_id,
            "sagemaker",
            "describeEndpoint",
            {"EndpointName": endpoint},
            resources=self._endpoint_arns(),
            result_selector={"status": J.string_at("$.EndpointStatus")},
            result_path=result_path,
        )

    def _notify(self, state_id: str, message: dict[str, Any]) -> tasks.SnsPublish:
        task = tasks.SnsPublish(
            self,
            state_id,
            topic=self._topic,
            message=sfn.TaskInput.from_object(message),
            subject=f"{self._prefix} model pipeline",
            result_path=J.DISCARD,
        )
        add_transient_retry(task, "sns")
        return task

    # ----- failure paths

    def _build_failure_paths(self) -> None:
        failed = sfn.Fail(self, "Failed", error_path="$.error.Error", cause_path="$.error.Cause")
        failure_message = {
            "outcome": "failed",
            "execution": J.execution_id,
            "error": J.string_at("$.error.Error"),
            "cause": J.string_at("$.error.Cause"),
        }
        notify_failed = self._notify("Notify failure", failure_message)
        notify_failed.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.notify_error")
        notify_failed.next(failed)
        self.fail_before_package: sfn.IChainable = notify_failed

        reject = self._call(
            "Reject package",
            "sagemaker",
            "updateModelPackage",
            {
                "ModelPackageArn": J.string_at("$.record.model_package_arn"),
                "ModelApprovalStatus": "Rejected",
                "ApprovalDescription": J.format("{}: see execution {}", J.string_at("$.error.Error"), J.execution_id),
            },
            resources=self._prefixed("model-package"),
        )
        reject.add_catch(notify_failed, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        reject.next(notify_failed)
        self.fail_after_package: sfn.IChainable = reject

        rolled_back = sfn.Fail(self, "Rolled back", error_path="$.error.Error", cause_path="$.error.Cause")
        notify_rollback = self._notify(
            "Notify rollback",
            {
                "outcome": "rolled-back",
                "execution": J.execution_id,
                "endpoint": J.string_at("$.run.baseline_endpoint"),
                "model_package_arn": J.string_at("$.record.model_package_arn"),
                "reason": J.string_at("$.error.Error"),
                "cause": J.string_at("$.error.Cause"),
            },
        )
        notify_rollback.add_catch(rolled_back, errors=[sfn.Errors.ALL], result_path="$.notify_error")
        notify_rollback.next(rolled_back)
        reject_rolled_back = self._call(
            "Reject rolled-back package",
            "sagemaker",
            "updateModelPackage",
            {
                "ModelPackageArn": J.string_at("$.record.model_package_arn"),
                "ModelApprovalStatus": "Rejected",
                "ApprovalDescription": J.format(
                    "rolled back, {}: see execution {}", J.string_at("$.error.Error"), J.execution_id
                ),
            },
            resources=self._prefixed("model-package"),
        )
        reject_rolled_back.add_catch(notify_rollback, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        reject_rolled_back.next(notify_rollback)
        tag = self._tag_endpoint("Tag endpoint rolled-back", "rolled-back")
        tag.add_catch(reject_rolled_back, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        tag.next(reject_rolled_back)
        # Weights are the fast, in-place way back; when the canary config is gone
        # (promotion under way) the endpoint returns to the config that served before.
        restore_config = self._call(
            "Restore last approved config",
            "sagemaker",
            "updateEndpoint",
            {
                "EndpointName": J.string_at("$.run.baseline_endpoint"),
                "EndpointConfigName": J.string_at("$.endpoint.config"),
            },
            resources=[*self._endpoint_arns(), self._arn("endpoint-config", "*")],
        )
        restore_config.add_catch(tag, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        restore_config.next(tag)
        restore_weights = self._set_weights("Restore baseline weights", 0, 100, J.string_at("$.run.baseline_endpoint"))
        restore_weights.add_catch(restore_config, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        restore_weights.next(tag)
        self.rollback: sfn.IChainable = restore_weights

    # ----- the main path

    def _build(self, validate_function: lambda_.IFunction, record_function: lambda_.IFunction) -> sfn.IChainable:
        validate = tasks.LambdaInvoke(
            self,
            "Validate input",
            lambda_function=validate_function,
            # The whole execution input is the event (the standard lambda:invoke
            # integration: a bare "$" cannot be the Parameters of a direct invoke).
            payload=sfn.TaskInput.from_json_path_at("$"),
            result_selector={"outcome": J.object_at("$.Payload")},
            result_path="$.validation",
            retry_on_service_exceptions=True,
        )
        self._catch(validate, self.fail_before_package)
        start = sfn.Pass(self, "Start run", parameters={"run": J.object_at("$.validation.outcome.run")})
        invalid = sfn.Pass(
            self,
            "Invalid input",
            parameters={"error": {"Error": "InvalidInput", "Cause": J.string_at("$.validation.outcome.message")}},
        )
        invalid.next(self.fail_before_package)
        valid = sfn.Choice(self, "Input valid?")
        valid.when(sfn.Condition.boolean_equals("$.validation.outcome.valid", True), start)
        valid.otherwise(invalid)
        validate.next(valid)

        record = tasks.LambdaInvoke(
            self,
            "Record model package",
            lambda_function=record_function,
            payload=sfn.TaskInput.from_object({"run": J.object_at("$.run"), "execution_id": J.execution_id}),
            payload_response_only=True,
            result_path="$.record",
        )
        self._catch(record, self.fail_before_package)
        start.next(self._quantize(then=record))

        already = sfn.Pass(
            self, "Run already decided", parameters={"outcome": "already-decided", "record": J.object_at("$.record")}
        ).next(sfn.Succeed(self, "Nothing to do"))
        decided = sfn.Choice(self, "Package pending?")
        decided.when(sfn.Condition.string_equals("$.record.approval_status", PENDING), self._evaluate())
        decided.otherwise(already)
        record.next(decided)
        return validate

    def _quantize(self, *, then: sfn.IChainable) -> sfn.IChainable:
        fail = self.fail_before_package
        describe = self._call(
            "Find training job",
            "sagemaker",
            "describeTrainingJob",
            {"TrainingJobName": J.string_at("$.run.names.training_job")},
            resources=self._prefixed("training-job"),
            result_selector={"found": True},
            result_path="$.lookups.training_job",
        )
        create = self._call(
            "Create training job",
            "sagemaker",
            "createTrainingJob",
            {
                "TrainingJobName": J.string_at("$.run.names.training_job"),
                "RoleArn": self._role.role_arn,
                "AlgorithmSpecification": {
                    "TrainingImage": J.string_at("$.run.images.quantize"),
                    "TrainingInputMode": "File",
                },
                "HyperParameters": J.object_at("$.run.hyperparameters"),
                "InputDataConfig": [
                    _s3_channel("model", "$.run.s3.source_model_uri"),
                    _s3_channel("calibration", "$.run.s3.calibration_uri"),
                ],
                "OutputDataConfig": {
                    "S3OutputPath": J.string_at("$.run.s3.output_path"),
                    "KmsKeyId": self._key.key_arn,
                    # Uploads the model directory as files (<output>/<job>/output/model/),
                    # which the endpoint then loads without unpacking.
                    "CompressionType": "NONE",
                },
                "ResourceConfig": {
                    "InstanceType": J.string_at("$.run.instances.quantize"),
                    "InstanceCount": 1,
                    "VolumeSizeInGB": J.number_at("$.run.instances.quantize_volume_gb"),
                    "VolumeKmsKeyId": self._key.key_arn,
                },
                "VpcConfig": {
                    "SecurityGroupIds": [self._security_group.security_group_id],
                    "Subnets": self._subnet_ids,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": J.number_at("$.run.timing.quantize_max_seconds")},
                # The job reads its channels and writes its output through SageMaker;
                # the container itself needs no network.
                "EnableNetworkIsolation": True,
                "Tags": J.list_at("$.run.tags"),
            },
            resources=self._prefixed("training-job"),
        )
        status = self._call(
            "Describe training job",
            "sagemaker",
            "describeTrainingJob",
            {"TrainingJobName": J.string_at("$.run.names.training_job")},
            resources=self._prefixed("training-job"),
            result_selector={"status": J.string_at("$.TrainingJobStatus")},
            result_path="$.quantize",
        )
        reason = self._call(
            "Read training failure",
            "sagemaker",
            "describeTrainingJob",
            {"TrainingJobName": J.string_at("$.run.names.training_job")},
            resources=self._prefixed("training-job"),
            result_selector={"Error": "QuantizeJobFailed", "Cause": J.string_at("$.FailureReason")},
            result_path="$.error",
        )
        self._catch(reason, fail)
        reason.next(fail)
        stopped = self._error("Training job stopped", "QuantizeJobStopped", "the training job was stopped")
        stopped.next(fail)
        timed_out = self._error("Training job timed out", "QuantizeTimedOut", "the training job outlived its polls")
        stop = self._call(
            "Stop training job",
            "sagemaker",
            "stopTrainingJob",
            {"TrainingJobName": J.string_at("$.run.names.training_job")},
            resources=self._prefixed("training-job"),
        )
        stop.add_catch(fail, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        timed_out.next(stop).next(fail)
        failed_choice = sfn.Choice(self, "Training failed how?")
        failed_choice.when(sfn.Condition.string_equals("$.quantize.status", "Failed"), reason)
        failed_choice.otherwise(stopped)
        poll = self._poll(
            "Quantize",
            describe=status,
            status_path="$.quantize.status",
            done_status="Completed",
            failed_status=("Failed", "Stopped"),
            max_polls_path="$.run.timing.quantize_max_polls",
            wait_seconds_path="$.run.timing.poll_seconds",
            done=then,
            failed=failed_choice,
            timed_out=timed_out,
            on_error=fail,
        )
        return self._ensure("training_job", describe=describe, create=create, then=poll, on_error=fail)

    def _evaluate(self) -> sfn.IChainable:
        fail = self.fail_after_package
        job = "$.run.names.evaluate_job"
        describe = self._call(
            "Find evaluate job",
            "sagemaker",
            "describeProcessingJob",
            {"ProcessingJobName": J.string_at(job)},
            resources=self._prefixed("processing-job"),
            result_selector={"found": True},
            result_path="$.lookups.evaluate_job",
        )
        create = self._call(
            "Create evaluate job",
            "sagemaker",
            "createProcessingJob",
            {
                "ProcessingJobName": J.string_at(job),
                "RoleArn": self._role.role_arn,
                "AppSpecification": {
                    "ImageUri": J.string_at("$.run.images.evaluate"),
                    "ContainerEntrypoint": ["python3", "-m", "jobs.evaluate"],
                    "ContainerArguments": J.list_at("$.run.evaluate_arguments"),
                },
                "ProcessingInputs": [
                    _processing_input("baseline", "$.run.s3.source_model_uri"),
                    _processing_input("candidate", "$.record.artifact_uri"),
                    _processing_input("validation", "$.run.s3.validation_uri"),
                ],
                "ProcessingOutputConfig": {
                    "KmsKeyId": self._key.key_arn,
                    "Outputs": [
                        {
                            "OutputName": "reports",
                            "S3Output": {
                                "S3Uri": J.string_at("$.run.s3.reports_uri"),
                                "LocalPath": "/opt/ml/processing/output",
                                "S3UploadMode": "EndOfJob",
                            },
                        }
                    ],
                },
                "ProcessingResources": {
                    "ClusterConfig": {
                        "InstanceCount": 1,
                        "InstanceType": J.string_at("$.run.instances.evaluate"),
                        "VolumeSizeInGB": 200,
                        "VolumeKmsKeyId": self._key.key_arn,
                    }
                },
                "NetworkConfig": {
                    "EnableNetworkIsolation": True,
                    "VpcConfig": {
                        "SecurityGroupIds": [self._security_group.security_group_id],
                        "Subnets": self._subnet_ids,
                    },
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": J.number_at("$.run.timing.evaluate_max_seconds")},
                "Tags": J.list_at("$.run.tags"),
            },
            resources=self._prefixed("processing-job"),
        )
        status = self._call(
            "Describe evaluate job",
            "sagemaker",
            "describeProcessingJob",
            {"ProcessingJobName": J.string_at(job)},
            resources=self._prefixed("processing-job"),
            result_selector={"status": J.string_at("$.ProcessingJobStatus")},
            result_path="$.evaluate",
        )
        reason = self._call(
            "Read evaluate failure",
            "sagemaker",
            "describeProcessingJob",
            {"ProcessingJobName": J.string_at(job)},
            resources=self._prefixed("processing-job"),
            result_selector={"Error": "EvaluateJobFailed", "Cause": J.string_at("$.FailureReason")},
            result_path="$.error",
        )
        self._catch(reason, fail)
        reason.next(fail)
        stopped = self._error("Evaluate job stopped", "EvaluateJobStopped", "the evaluate job was stopped")
        stopped.next(fail)
        timed_out = self._error("Evaluate job timed out", "EvaluateTimedOut", "the evaluate job outlived its polls")
        stop = self._call(
            "Stop evaluate job",
            "sagemaker",
            "stopProcessingJob",
            {"ProcessingJobName": J.string_at(job)},
            resources=self._prefixed("processing-job"),
        )
        stop.add_catch(fail, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        timed_out.next(stop).next(fail)
        failed_choice = sfn.Choice(self, "Evaluate failed how?")
        failed_choice.when(sfn.Condition.string_equals("$.evaluate.status", "Failed"), reason)
        failed_choice.otherwise(stopped)

        read_report = self._call(
            "Read report",
            "s3",
            "getObject",
            {"Bucket": self._bucket.bucket_name, "Key": J.string_at("$.run.s3.report_key")},
            resources=[self._bucket.arn_for_objects("models/*/reports/*")],
            iam_action="s3:GetObject",
            result_selector={"report": J.string_to_json(J.string_at("$.Body"))},
            result_path="$.evaluation",
        )
        self._catch(read_report, fail)
        gate = sfn.Choice(self, "Gate passed?")
        passed = "$.evaluation.report.gate.passed"
        reasons = "$.evaluation.report.gate.reasons"
        gate_failed = sfn.Pass(
            self,
            "Gate failed",
            parameters={"Error": "GateFailed", "Cause": J.json_to_string(J.list_at(reasons))},
            result_path="$.error",
        ).next(fail)
        report_invalid = self._error(
            "Report invalid", "ReportInvalid", "report.json has no boolean gate.passed with gate.reasons"
        ).next(fail)
        gate.when(
            sfn.Condition.and_(
                sfn.Condition.is_present(passed),
                sfn.Condition.is_boolean(passed),
                sfn.Condition.boolean_equals(passed, True),
            ),
            self._deploy(),
        )
        gate.when(sfn.Condition.is_present(reasons), gate_failed)
        gate.otherwise(report_invalid)
        read_report.next(gate)

        poll = self._poll(
            "Evaluate",
            describe=status,
            status_path="$.evaluate.status",
            done_status="Completed",
            failed_status=("Failed", "Stopped"),
            max_polls_path="$.run.timing.evaluate_max_polls",
            wait_seconds_path="$.run.timing.poll_seconds",
            done=read_report,
            failed=failed_choice,
            timed_out=timed_out,
            on_error=fail,
        )
        return self._ensure("evaluate_job", describe=describe, create=create, then=poll, on_error=fail)

    def _endpoint_wait(
        self,
        name: str,
        *,
        endpoint: str,
        then: sfn.IChainable,
        on_error: sfn.IChainable,
        max_polls_path: str = "$.run.timing.deploy_max_polls",
        wait_seconds_path: str = "$.run.timing.poll_seconds",
    ) -> sfn.IChainable:
        """Poll the endpoint until InService; Failed or too many polls go to ``on_error``."""
        status = self._describe_endpoint(f"{name} describe endpoint", J.string_at(endpoint), "$.endpoint_status")
        failed = self._error(f"{name} endpoint failed", "EndpointUpdateFailed", "the endpoint update failed")
        failed.next(on_error)
        timed_out = self._error(
            f"{name} endpoint timed out", "EndpointUpdateTimedOut", "the endpoint update outlived its polls"
        )
        timed_out.next(on_error)
        return self._poll(
            name,
            describe=status,
            status_path="$.endpoint_status.status",
            done_status="InService",
            failed_status=("Failed", "OutOfService"),
            max_polls_path=max_polls_path,
            wait_seconds_path=wait_seconds_path,
            done=then,
            failed=failed,
            timed_out=timed_out,
            on_error=on_error,
        )

    def _deploy(self) -> sfn.IChainable:
        before = self.fail_after_package
        rollback = self.rollback
        endpoint = "$.run.baseline_endpoint"
        describe_endpoint = self._call(
            "Describe baseline endpoint",
            "sagemaker",
            "describeEndpoint",
            {"EndpointName": J.string_at(endpoint)},
            resources=self._endpoint_arns(),
            result_selector={
                "config": J.string_at("$.EndpointConfigName"),
                "arn": J.string_at("$.EndpointArn"),
                "status": J.string_at("$.EndpointStatus"),
            },
            result_path="$.endpoint",
        )
        self._catch(describe_endpoint, before)
        serving_config = self._call(
            "Describe serving config",
            "sagemaker",
            "describeEndpointConfig",
            {"EndpointConfigName": J.string_at("$.endpoint.config")},
            # The platform team names the endpoint's first config; any name may serve.
            resources=[self._arn("endpoint-config", "*")],
            # Every config this pipeline writes lists the serving variant first.
            result_selector={"serving": J.array_get_item(J.list_at("$.ProductionVariants"), 0)},
            result_path="$.current",
        )
        self._catch(serving_config, before)

        find_model = self._call(
            "Find candidate model",
            "sagemaker",
            "describeModel",
            {"ModelName": J.string_at("$.run.names.candidate_model")},
            resources=self._prefixed("model"),
            result_selector={"found": True},
            result_path="$.lookups.candidate_model",
        )
        create_model = self._call(
            "Create candidate model",
            "sagemaker",
            "createModel",
            {
                "ModelName": J.string_at("$.run.names.candidate_model"),
                "ExecutionRoleArn": self._role.role_arn,
                "PrimaryContainer": {
                    "Image": J.string_at("$.run.images.serving"),
                    "ModelDataSource": {
                        "S3DataSource": {
                            "S3Uri": J.string_at("$.record.artifact_uri"),
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        }
                    },
                    "Environment": J.object_at("$.run.serving_environment"),
                },
                "VpcConfig": {
                    "SecurityGroupIds": [self._security_group.security_group_id],
                    "Subnets": self._subnet_ids,
                },
                "EnableNetworkIsolation": True,
                "Tags": J.list_at("$.run.tags"),
            },
            resources=self._prefixed("model"),
        )
        find_config = self._call(
            "Find canary config",
            "sagemaker",
            "describeEndpointConfig",
            {"EndpointConfigName": J.string_at("$.run.names.endpoint_config")},
            resources=self._prefixed("endpoint-config"),
            result_selector={"found": True},
            result_path="$.lookups.endpoint_config",
        )
        create_config = self._call(
            "Create canary config",
            "sagemaker",
            "createEndpointConfig",
            {
                "EndpointConfigName": J.string_at("$.run.names.endpoint_config"),
                "KmsKeyId": self._key.key_arn,
                "ProductionVariants": [
                    {
                        "VariantName": "baseline",
                        "ModelName": J.string_at("$.current.serving.ModelName"),
                        "InstanceType": J.string_at("$.current.serving.InstanceType"),
                        "InitialInstanceCount": J.number_at("$.current.serving.InitialInstanceCount"),
                        "InitialVariantWeight": J.number_at("$.run.canary.first.baseline"),
                    },
                    {
                        "VariantName": "candidate",
                        "ModelName": J.string_at("$.run.names.candidate_model"),
                        "InstanceType": J.string_at("$.run.instances.serving"),
                        "InitialInstanceCount": J.number_at("$.run.instances.serving_count"),
                        "InitialVariantWeight": J.number_at("$.run.canary.first.candidate"),
                    },
                ],
                "Tags": J.list_at("$.run.tags"),
            },
            resources=self._prefixed("endpoint-config"),
        )
        update = self._call(
            "Deploy canary",
            "sagemaker",
            "updateEndpoint",
            {"EndpointName": J.string_at(endpoint), "EndpointConfigName": J.string_at("$.run.names.endpoint_config")},
            resources=[*self._endpoint_arns(), *self._prefixed("endpoint-config")],
        )
        self._catch(update, rollback)
        tag_canary = self._tag_endpoint("Tag endpoint canary", "canary", last_approved=True)
        self._catch(tag_canary, rollback)

        bake = self._bake_loop()
        wait_canary = self._endpoint_wait("Canary", endpoint=endpoint, then=bake, on_error=rollback)
        update.next(tag_canary).next(wait_canary)

        config_step = self._ensure(
            "endpoint_config", describe=find_config, create=create_config, then=update, on_error=before
        )
        model_step = self._ensure(
            "candidate_model", describe=find_model, create=create_model, then=config_step, on_error=before
        )
        serving_config.next(model_step)

        on_canary = sfn.Choice(self, "Endpoint already on canary?")
        on_canary.when(
            sfn.Condition.string_equals_json_path("$.endpoint.config", "$.run.names.endpoint_config"), wait_canary
        )
        on_canary.otherwise(serving_config)
        return describe_endpoint.next(on_canary)

    def _bake_loop(self) -> sfn.IChainable:
        """One iteration per canary step: set weights, wait until InService, bake, read the candidate's alarms."""
        step_done = sfn.Succeed(self, "Step healthy")
        alarm = sfn.Fail(
            self,
            "Candidate alarm",
            error="CanaryAlarm",
            cause_path=J.format(
                "step {} ({}% candidate): in ALARM: {}",
                J.string_at("$.step.index"),
                J.string_at("$.step.candidate"),
                J.json_to_string(J.list_at("$.alarms.names")),
            ),
        )
        step_failed = sfn.Fail(self, "Step failed", error_path="$.error.Error", cause_path="$.error.Cause")
        set_weights = self._set_weights(
            "Set canary weights",
            J.number_at("$.step.candidate"),
            J.number_at("$.step.baseline"),
            J.string_at("$.endpoint"),
        )
        self._catch(set_weights, step_failed)
        count_alarms = self._call(
            "Count candidate alarms",
            "cloudwatch",
            "describeAlarms",
            {"AlarmNamePrefix": J.string_at("$.alarm_prefix"), "StateValue": "ALARM"},
            resources=self._alarm_arns(),
            result_selector={"count": J.array_length(J.list_at("$.MetricAlarms"))},
            result_path="$.alarms",
        )
        self._catch(count_alarms, step_failed)
        name_alarms = self._call(
            "Name candidate alarms",
            "cloudwatch",
            "describeAlarms",
            {"AlarmNamePrefix": J.string_at("$.alarm_prefix"), "StateValue": "ALARM"},
            resources=self._alarm_arns(),
            result_selector={"names": J.list_at("$.MetricAlarms[*].AlarmName")},
            result_path="$.alarms",
        )
        self._catch(name_alarms, step_failed)
        name_alarms.next(alarm)
        healthy = sfn.Choice(self, "Candidate healthy?")
        healthy.when(sfn.Condition.number_greater_than("$.alarms.count", 0), name_alarms)
        healthy.otherwise(step_done)
        bake_wait = sfn.Wait(self, "Bake", time=sfn.WaitTime.seconds_path("$.step.bake_seconds"))
        bake_wait.next(count_alarms).next(healthy)
        wait_weights = self._endpoint_wait(
            "Weights",
            endpoint="$.endpoint",
            then=bake_wait,
            on_error=step_failed,
            max_polls_path="$.max_polls",
            wait_seconds_path="$.poll_seconds",
        )
        set_weights.next(wait_weights)

        bake = sfn.Map(
            self,
            "Bake canary steps",
            items_path="$.run.canary.steps",
            # One step after the other: weights only rise while the candidate stays healthy.
            max_concurrency=1,
            item_selector={
                "step": J.object_at("$$.Map.Item.Value"),
                "endpoint": J.string_at("$.run.baseline_endpoint"),
                "alarm_prefix": J.string_at("$.run.names.alarm_prefix"),
                "poll_seconds": J.number_at("$.run.timing.poll_seconds"),
                "max_polls": J.number_at("$.run.timing.deploy_max_polls"),
            },
            result_path=J.DISCARD,
        )
        bake.item_processor(set_weights)
        bake.add_catch(self.rollback, errors=[sfn.Errors.ALL], result_path="$.error")
        bake.next(self._promote())
        return bake

    def _promote(self) -> sfn.IChainable:
        rollback = self.rollback
        find = self._call(
            "Find promoted config",
            "sagemaker",
            "describeEndpointConfig",
            {"EndpointConfigName": J.string_at("$.run.names.promoted_config")},
            resources=self._prefixed("endpoint-config"),
            result_selector={"found": True},
            result_path="$.lookups.promoted_config",
        )
        create = self._call(
            "Create promoted config",
            "sagemaker",
            "createEndpointConfig",
            {
                "EndpointConfigName": J.string_at("$.run.names.promoted_config"),
                "KmsKeyId": self._key.key_arn,
                # Only the candidate, still named "candidate": its alarms keep guarding it
                # after promotion (the monitoring stack rolls back on them).
                "ProductionVariants": [
                    {
                        "VariantName": "candidate",
                        "ModelName": J.string_at("$.run.names.candidate_model"),
                        "InstanceType": J.string_at("$.run.instances.serving"),
                        "InitialInstanceCount": J.number_at("$.run.instances.serving_count"),
                        "InitialVariantWeight": 100,
                    }
                ],
                "Tags": J.list_at("$.run.tags"),
            },
            resources=self._prefixed("endpoint-config"),
        )
        update = self._call(
            "Remove baseline variant",
            "sagemaker",
            "updateEndpoint",
            {
                "EndpointName": J.string_at("$.run.baseline_endpoint"),
                "EndpointConfigName": J.string_at("$.run.names.promoted_config"),
            },
            resources=[*self._endpoint_arns(), *self._prefixed("endpoint-config")],
        )
        self._catch(update, rollback)
        tag = self._tag_endpoint("Tag endpoint promoted", "promoted")
        self._catch(tag, rollback)
        approve = self._call(
            "Approve package",
            "sagemaker",
            "updateModelPackage",
            {
                "ModelPackageArn": J.string_at("$.record.model_package_arn"),
                "ModelApprovalStatus": "Approved",
                "ApprovalDescription": J.format("promoted by execution {}", J.execution_id),
            },
            resources=self._prefixed("model-package"),
        )
        self._catch(approve, rollback)
        notify = self._notify(
            "Notify promoted",
            {
                "outcome": "promoted",
                "execution": J.execution_id,
                "endpoint": J.string_at("$.run.baseline_endpoint"),
                "model_package_arn": J.string_at("$.record.model_package_arn"),
                "artifact_uri": J.string_at("$.record.artifact_uri"),
                "report_key": J.string_at("$.run.s3.report_key"),
            },
        )
        promoted = sfn.Pass(
            self,
            "Promotion outcome",
            parameters={
                "outcome": "promoted",
                "run": J.object_at("$.run"),
                "record": J.object_at("$.record"),
                "gate": J.object_at("$.evaluation.report.gate"),
            },
        ).next(sfn.Succeed(self, "Promoted"))
        # A failed notification must not undo a healthy promotion.
        notify.add_catch(promoted, errors=[sfn.Errors.ALL], result_path="$.notify_error")
        tag.next(approve).next(notify).next(promoted)
        wait = self._endpoint_wait("Promotion", endpoint="$.run.baseline_endpoint", then=tag, on_error=rollback)
        update.next(wait)
        return self._ensure("promoted_config", describe=find, create=create, then=update, on_error=rollback)


def _s3_channel(name: str, uri_path: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": J.string_at(uri_path),
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def _processing_input(name: str, uri_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": J.string_at(uri_path),
            "LocalPath": f"/opt/ml/processing/input/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
        },
    }
