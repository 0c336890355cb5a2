"""The per-model workflow: validate -> quantize -> record -> evaluate -> gate -> canary -> promote or roll back.

Built from CDK task classes. SageMaker calls go through ``CallAwsService``
(AWS SDK integrations) with Describe + Wait loops rather than ``.sync``: there
is no ``.sync`` for endpoint updates, and every wait must be bounded by the run
plan (the validate function derives poll intervals that keep the worst case
under the 25,000-event history limit, lambda/validate_input/history_budget.py).
Every name and URI comes from the run plan (``$.run``), so the definition holds
only infrastructure (roles, key, subnets, bucket, functions).

Idempotency: every SageMaker resource is looked up before it is created; names
derive from ``run_id``. A run whose model package was already approved or
rejected stops after the record step.

The endpoint, as SageMaker really behaves (docs/aws-behaviour.md):
- a mutation while the endpoint is Creating/Updating is refused, so every
  UpdateEndpoint and weights call first waits (bounded) for InService;
- InService is not success: a failed UpdateEndpoint returns to InService on the
  old config with FailureReason. Done means InService on the expected config
  with the expected weights (the canary guard function judges each poll);
- the serving variant keeps its name and instance type through a canary (so an
  autoscaling target on it stays valid); the candidate is a second variant.

Error handling: each Task retries what is safe to retry under the names Step
Functions really reports (stacks/workflow_steps.py) and catches everything
else into one of three paths, chosen by how far the run got:

- before a model package exists: notify, fail;
- after the package, before the endpoint changed (including a refused
  "Deploy canary"): reject the package, notify, fail;
- once the endpoint changed: traffic back to the serving variant, then the
  endpoint back on its last approved (baseline-only) config so no candidate
  instance keeps billing; tag ``rolled-back`` only when that config is
  InService, else ``rollback-failed``; reject the package, notify, fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.workflow_steps import StepBuilder, retry_sns

J = sfn.JsonPath
PENDING = "PendingManualApproval"
CANDIDATE = "candidate"
# Tag keys and phases shared with the rollback function (lambda/rollback/rollback_logic.py)
# and the canary guard (lambda/canary_guard/guard_logic.py); docs/contracts.md lists them.
TAG_PHASE = "llmq:phase"
TAG_LAST_APPROVED = "llmq:last-approved-config"
TAG_PROMOTED_AT = "llmq:promoted-at"


class PipelineWorkflow(StepBuilder):
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
        guard_function: lambda_.IFunction,
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
        self._guard = guard_function

        self._build_failure_paths()
        self.start = self._build(validate_function, record_function)

    # ----- ARNs (IAM scope: names start with the stage prefix, endpoints are the monitored ones)

    def _arn(self, resource: str, name: str, service: str = "sagemaker") -> str:
        return self._stack.format_arn(service=service, resource=resource, resource_name=name)

    def _prefixed(self, resource: str) -> list[str]:
        return [self._arn(resource, f"{self._prefix}-*")]

    def _endpoint_arns(self) -> list[str]:
        return [self._arn("endpoint", name) for name in self._endpoint_names]

    # ----- building blocks

    def _vpc(self) -> dict[str, Any]:
        return {"SecurityGroupIds": [self._security_group.security_group_id], "Subnets": self._subnet_ids}

    def _tags(self, phase: str) -> list[dict[str, Any]]:
        return [
            {"Key": TAG_PHASE, "Value": phase},
            {"Key": "llmq:model-name", "Value": J.string_at("$.run.model_name")},
            {"Key": "llmq:run-id", "Value": J.string_at("$.run.run_id")},
            {"Key": "llmq:model-package-arn", "Value": J.string_at("$.record.model_package_arn")},
        ]

    def _tag_endpoint(self, state_id: str, tags: list[dict[str, Any]]) -> tasks.CallAwsService:
        return self.call(
            state_id,
            "sagemaker",
            "addTags",
            {"ResourceArn": J.string_at("$.endpoint.arn"), "Tags": tags},
            resources=self._endpoint_arns(),
        )

    def _phase_tag(self, state_id: str, phase: str) -> tasks.CallAwsService:
        return self._tag_endpoint(state_id, [{"Key": TAG_PHASE, "Value": phase}])

    def _set_weights(self, state_id: str, *, endpoint: str, serving: str, candidate: Any, baseline: Any) -> Any:
        return self.call(
            state_id,
            "sagemaker",
            "updateEndpointWeightsAndCapacities",
            {
                "EndpointName": J.string_at(endpoint),
                "DesiredWeightsAndCapacities": [
                    {"VariantName": J.string_at(serving), "DesiredWeight": baseline},
                    {"VariantName": CANDIDATE, "DesiredWeight": candidate},
                ],
            },
            resources=self._endpoint_arns(),
        )

    def _update_endpoint(
        self, state_id: str, *, endpoint: str, config: str, retain_instance_counts: bool
    ) -> tasks.CallAwsService:
        parameters: dict[str, Any] = {"EndpointName": J.string_at(endpoint), "EndpointConfigName": J.string_at(config)}
        if retain_instance_counts:
            # Keep the serving variant's current (possibly autoscaled) instance count; weights
            # come from the new config (docs: RetainAllVariantProperties, ExcludeRetainedVariantProperties).
            parameters["RetainAllVariantProperties"] = True
            parameters["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": "DesiredWeight"}]
        return self.call(
            state_id,
            "sagemaker",
            "updateEndpoint",
            parameters,
            # The config may be the platform team's own (restore), of any name.
            resources=[*self._endpoint_arns(), self._arn("endpoint-config", "*")],
        )

    def _create_config(self, state_id: str, *, name: str, variants: Any, with_key: bool) -> tasks.CallAwsService:
        parameters: dict[str, Any] = {
            "EndpointConfigName": J.string_at(name),
            "ProductionVariants": variants,
            "Tags": J.list_at("$.run.tags"),
        }
        if with_key:
            parameters["KmsKeyId"] = self._key.key_arn
        return self.call(
            state_id,
            "sagemaker",
            "createEndpointConfig",
            parameters,
            resources=self._prefixed("endpoint-config"),
            retry="create",
        )

    def _ensure_config(
        self,
        label: str,
        *,
        lookup: str,
        name: str,
        variants: Any,
        key_allowed: sfn.Condition,
        then: sfn.IChainable,
        on_error: sfn.IChainable,
    ) -> sfn.IChainable:
        """Find the endpoint config ``name``, else create it: with the KMS key, or without where a variant has NVMe."""
        find = self.call(
            f"Find {label} config",
            "sagemaker",
            "describeEndpointConfig",
            {"EndpointConfigName": J.string_at(name)},
            resources=self._prefixed("endpoint-config"),
            retry="none",
            result_selector={"found": True},
            result_path=f"$.lookups.{lookup}",
        )
        title = label.capitalize()
        with_key = self._create_config(f"Create {label} config", name=name, variants=variants, with_key=True)
        without_key = self._create_config(
            f"Create {label} config (instance storage)", name=name, variants=variants, with_key=False
        )
        choice = sfn.Choice(self, f"{title} config may take a KMS key?")
        for task in (with_key, without_key):
            self.catch(task, on_error)
            task.next(then)
        choice.when(key_allowed, with_key)
        choice.otherwise(without_key)
        return self.lookup(
            lookup,
            describe=find,
            on_found=then,
            on_not_found=choice,
            on_error=on_error,
            wait_seconds_path="$.run.timing.endpoint_poll_seconds",
        )

    def _await_endpoint(
        self,
        name: str,
        *,
        endpoint: str,
        then: sfn.IChainable,
        on_error: sfn.IChainable,
        expect_config: str | None = None,
        expect_weights: list[dict[str, Any]] | None = None,
        max_polls_path: str = "$.run.timing.deploy_max_polls",
        wait_seconds_path: str = "$.run.timing.endpoint_poll_seconds",
        counter_root: str = "$.polls",
        error_path: str = "$.error",
    ) -> sfn.IChainable:
        """Poll until the endpoint is InService (and on ``expect_config`` with ``expect_weights``), bounded."""
        payload: dict[str, Any] = {"action": "endpoint_state", "endpoint": J.string_at(endpoint)}
        if expect_config:
            payload["expect_config"] = J.string_at(expect_config)
        if expect_weights:
            payload["expect_weights"] = expect_weights
        state = self.invoke(f"{name} endpoint state", self._guard, payload, "$.endpoint_state")
        failed = self.error_from(
            f"{name} endpoint failed", "EndpointUpdateFailed", "$.endpoint_state.reason", error_path
        )
        failed.next(on_error)
        timed_out = self.error(
            f"{name} endpoint timed out",
            "EndpointUpdateTimedOut",
            "the endpoint did not reach InService in time",
            error_path,
        )
        timed_out.next(on_error)
        return self.poll(
            name,
            describe=state,
            status_path="$.endpoint_state.state",
            done=("done",),
            failed=("failed",),
            max_polls_path=max_polls_path,
            wait_seconds_path=wait_seconds_path,
            on_done=then,
            on_failed=failed,
            on_timeout=timed_out,
            on_error=on_error,
            counter_root=counter_root,
            error_path=error_path,
        )

    def _check_canary(
        self, state_id: str, *, since: str, endpoint: str, run_id: str, alarms: str
    ) -> tasks.LambdaInvoke:
        return self.invoke(
            state_id,
            self._guard,
            {
                "action": "canary_check",
                "endpoint": J.string_at(endpoint),
                "run_id": J.string_at(run_id),
                "since": J.string_at(since),
                "alarm_names": J.list_at(alarms),
            },
            "$.check",
        )

    def _resume_autoscaling(self, state_id: str) -> tasks.LambdaInvoke:
        return self.invoke(
            state_id,
            self._guard,
            {
                "action": "resume_autoscaling",
                "captured": J.object_at("$.autoscaling.captured"),
                **self._autoscaling_record(),
            },
            "$.autoscaling_restored",
        )

    @staticmethod
    def _autoscaling_record() -> dict[str, Any]:
        return {"bucket": J.string_at("$.run.s3.bucket"), "record_key": J.string_at("$.run.s3.autoscaling_key")}

    @staticmethod
    def _autoscaling_suspended() -> sfn.Condition:
        return sfn.Condition.and_(
            sfn.Condition.is_present("$.autoscaling.suspend"),
            sfn.Condition.boolean_equals("$.autoscaling.suspend", True),
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
        retry_sns(task)
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

        reject = self._reject("Reject package", "{}: see execution {}", notify_failed)
        self.fail_after_package: sfn.IChainable = reject
        self.rollback: sfn.IChainable = self._build_rollback()

    def _reject(self, state_id: str, description: str, then: sfn.IChainable) -> tasks.CallAwsService:
        reject = self.call(
            state_id,
            "sagemaker",
            "updateModelPackage",
            {
                "ModelPackageArn": J.string_at("$.record.model_package_arn"),
                "ModelApprovalStatus": "Rejected",
                "ApprovalDescription": J.format(description, J.string_at("$.error.Error"), J.execution_id),
            },
            resources=self._prefixed("model-package"),
        )
        reject.add_catch(then, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        reject.next(then)
        return reject

    def _build_rollback(self) -> sfn.IChainable:
        """Traffic to the serving variant, then the endpoint on its last approved config; tag what really happened."""
        endpoint = "$.run.baseline_endpoint"
        last_approved = "$.guard.last_approved"

        def outcome(fail_id: str, outcome: str, phase: str) -> sfn.IChainable:
            """Tag the endpoint with what really happened, reject the package, notify, fail."""
            done = sfn.Fail(self, fail_id, error_path="$.error.Error", cause_path="$.error.Cause")
            notify = self._notify(
                f"Notify {outcome}",
                {
                    "outcome": outcome,
                    "execution": J.execution_id,
                    "endpoint": J.string_at(endpoint),
                    "model_package_arn": J.string_at("$.record.model_package_arn"),
                    "reason": J.string_at("$.error.Error"),
                    "cause": J.string_at("$.error.Cause"),
                },
            )
            notify.add_catch(done, errors=[sfn.Errors.ALL], result_path="$.notify_error")
            notify.next(done)
            reject = self._reject(f"Reject {outcome} package", f"{outcome}, {{}}: see execution {{}}", notify)
            tag = self._phase_tag(f"Tag endpoint {phase}", phase)
            tag.add_catch(reject, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
            tag.next(reject)
            # A promotion that lifted the serving variant's autoscaling: put it back on the restored
            # variant. Not while the endpoint still runs the promoted config (the restore failed):
            # a registered target would make SageMaker refuse the instance-type change back. The
            # setup then stays in its S3 record (run plan s3.autoscaling_key), which the rollback
            # function, a rerun or a person restores from; the cause says so.
            resume = self._resume_autoscaling(f"Resume autoscaling ({outcome})")
            not_restored = sfn.Pass(
                self,
                f"Autoscaling not restored ({outcome})",
                parameters={
                    "Error": J.string_at("$.error.Error"),
                    "Cause": J.format(
                        "{}; the serving variant's autoscaling is not registered again ({}): its setup is in "
                        "s3://{}/{}",
                        J.string_at("$.error.Cause"),
                        J.string_at("$.cleanup_error.Cause"),
                        J.string_at("$.run.s3.bucket"),
                        J.string_at("$.run.s3.autoscaling_key"),
                    ),
                },
                result_path="$.error",
            ).next(tag)
            resume.add_catch(not_restored, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
            resume.next(tag)
            still_promoted = self.error(
                f"Autoscaling kept lifted ({outcome})",
                "Lifted",
                "the endpoint still runs the promoted config, so the scalable target stays deregistered",
                "$.cleanup_error",
            ).next(not_restored)
            suspended = sfn.Choice(self, f"Autoscaling suspended ({outcome})?")
            suspended.when(
                sfn.Condition.and_(
                    self._autoscaling_suspended(),
                    sfn.Condition.is_present("$.endpoint_state.config"),
                    sfn.Condition.string_equals_json_path("$.endpoint_state.config", "$.run.names.promoted_config"),
                ),
                still_promoted,
            )
            suspended.when(self._autoscaling_suspended(), resume)
            suspended.otherwise(tag)
            return suspended

        rolled_back = outcome("Rolled back", "rolled-back", "rolled-back")
        failed_tag = outcome("Rollback failed", "rollback-failed", "rollback-failed")
        keep_reason = sfn.Pass(
            self,
            "Keep rollback failure",
            parameters={
                "Error": "RollbackFailed",
                "Cause": J.format(
                    "{} (rolling back from {}: {})",
                    J.string_at("$.rollback_error.Cause"),
                    J.string_at("$.error.Error"),
                    J.string_at("$.error.Cause"),
                ),
            },
            result_path="$.error",
        ).next(failed_tag)

        attempts = "$.polls.rollback_attempts"
        restore = self._update_endpoint(
            "Restore last approved config", endpoint=endpoint, config=last_approved, retain_instance_counts=True
        )
        restored = self._await_endpoint(
            "Restore",
            endpoint=endpoint,
            expect_config=last_approved,
            then=rolled_back,
            on_error=keep_reason,
            counter_root="$.polls.restore",
            error_path="$.rollback_error",
        )
        restore.next(restored)

        shift = self._set_weights(
            "Restore serving weights",
            endpoint=endpoint,
            serving="$.run.variants.serving_name",
            candidate=0,
            baseline=100,
        )
        shifted = self._await_endpoint(
            "Traffic back",
            endpoint=endpoint,
            expect_weights=[
                {"VariantName": J.string_at("$.run.variants.serving_name"), "Weight": 100},
                {"VariantName": CANDIDATE, "Weight": 0},
            ],
            then=restore,
            # Weights that did not apply: the config change below still takes traffic back.
            on_error=restore,
            counter_root="$.polls.traffic_back",
            error_path="$.rollback_error",
        )
        shift.next(shifted)

        where = sfn.Choice(self, "Endpoint runs what?")
        where.when(sfn.Condition.string_equals_json_path("$.endpoint_state.config", last_approved), rolled_back)
        where.when(
            sfn.Condition.string_equals_json_path("$.endpoint_state.config", "$.run.names.endpoint_config"), shift
        )
        where.otherwise(restore)
        ready = self._await_endpoint(
            "Rollback",
            endpoint=endpoint,
            then=where,
            on_error=keep_reason,
            counter_root="$.polls.rollback",
            error_path="$.rollback_error",
        )
        # A refused mutation (another update under way, e.g. the rollback function's own)
        # is tried again from the wait, a bounded number of times.
        again = sfn.Choice(self, "Rollback attempts left?")
        count = self.counter("Count rollback attempt", attempts)
        again.when(sfn.Condition.number_less_than(f"{attempts}.n", 3), count.next(ready))
        again.otherwise(keep_reason)
        for task in (restore, shift):
            self.catch(task, again, "$.rollback_error")
        start = self.start_counter("Start rollback", attempts)
        return start.next(ready)

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
        self.catch(validate, self.fail_before_package)
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
        self.catch(record, self.fail_before_package)
        start.next(self._quantize(then=record))

        already = sfn.Pass(
            self, "Run already decided", parameters={"outcome": "already-decided", "record": J.object_at("$.record")}
        ).next(sfn.Succeed(self, "Nothing to do"))
        decided = sfn.Choice(self, "Package pending?")
        decided.when(sfn.Condition.string_equals("$.record.approval_status", PENDING), self._evaluate())
        decided.otherwise(already)
        record.next(decided)
        return validate

    def _job_failure(self, name: str, *, describe: tasks.CallAwsService, error: str, fail: sfn.IChainable) -> Any:
        """Describe a failed job and fail with its reason (guarded: a missing field is a runtime error).

        A processing container's own words are ExitMessage (from /opt/ml/output/message);
        a training container's reach FailureReason (from /opt/ml/output/failure).
        """
        self.catch(describe, fail)
        with_message = self.error_from(f"{name} exit message", error, "$.failed_job.ExitMessage").next(fail)
        with_reason = self.error_from(f"{name} failure reason", error, "$.failed_job.FailureReason").next(fail)
        without = self.error(f"{name} failed without reason", error, "the job failed and SageMaker gave no reason")
        without.next(fail)
        has_reason = sfn.Choice(self, f"{name} gave a reason?")
        has_reason.when(sfn.Condition.is_present("$.failed_job.ExitMessage"), with_message)
        has_reason.when(sfn.Condition.is_present("$.failed_job.FailureReason"), with_reason)
        has_reason.otherwise(without)
        return describe.next(has_reason)

    def _sagemaker_job(
        self,
        *,
        noun: str,
        step: str,
        kind: str,
        api: str,
        name_path: str,
        create_parameters: dict[str, Any],
        on_done: sfn.IChainable,
        fail: sfn.IChainable,
    ) -> sfn.IChainable:
        """Find or create one SageMaker job, then poll it until it is done (``on_done``), failed, stopped or too long.

        ``noun`` names its states ("training" -> "Create training job"), ``step`` its poll loop, its
        ``$.<step>.status`` and its errors (``<Step>JobFailed``, ``<Step>JobStopped``, ``<Step>TimedOut``);
        ``kind`` is the ARN resource type and ``api`` the name in Describe/Create/Stop<api>.
        """
        title = noun.capitalize()
        job = {f"{api}Name": J.string_at(name_path)}
        resources = self._prefixed(kind)
        status_path = f"$.{step.lower()}.status"
        describe = self.call(
            f"Find {noun} job",
            "sagemaker",
            f"describe{api}",
            job,
            resources=resources,
            retry="none",
            result_selector={"found": True},
            result_path=f"$.lookups.{noun}_job",
        )
        create = self.call(
            f"Create {noun} job",
            "sagemaker",
            f"create{api}",
            {**job, **create_parameters},
            resources=resources,
            retry="create",
        )
        status = self.call(
            f"Describe {noun} job",
            "sagemaker",
            f"describe{api}",
            job,
            resources=resources,
            result_selector={"status": J.string_at(f"$.{api}Status")},
            result_path=f"$.{step.lower()}",
        )
        reason = self._job_failure(
            f"{title} job",
            describe=self.call(
                f"Read {noun} failure",
                "sagemaker",
                f"describe{api}",
                job,
                resources=resources,
                result_path="$.failed_job",
            ),
            error=f"{step}JobFailed",
            fail=fail,
        )
        stopped = self.error(f"{title} job stopped", f"{step}JobStopped", f"the {noun} job was stopped").next(fail)
        timed_out = self.error(f"{title} job timed out", f"{step}TimedOut", f"the {noun} job outlived its polls")
        stop = self.call(f"Stop {noun} job", "sagemaker", f"stop{api}", job, resources=resources)
        stop.add_catch(fail, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        timed_out.next(stop).next(fail)
        failed_choice = sfn.Choice(self, f"{title} failed how?")
        failed_choice.when(sfn.Condition.string_equals(status_path, "Failed"), reason)
        failed_choice.otherwise(stopped)
        poll = self.poll(
            step,
            describe=status,
            status_path=status_path,
            done=("Completed",),
            failed=("Failed", "Stopped"),
            max_polls_path=f"$.run.timing.{step.lower()}_max_polls",
            wait_seconds_path="$.run.timing.job_poll_seconds",
            on_done=on_done,
            on_failed=failed_choice,
            on_timeout=timed_out,
            on_error=fail,
        )
        self.catch(create, fail)
        create.next(poll)
        return self.lookup(
            f"{noun}_job",
            describe=describe,
            on_found=poll,
            on_not_found=create,
            on_error=fail,
            wait_seconds_path="$.run.timing.job_poll_seconds",
        )

    def _quantize(self, *, then: sfn.IChainable) -> sfn.IChainable:
        fail = self.fail_before_package
        job = {"TrainingJobName": J.string_at("$.run.names.training_job")}
        # Where SageMaker really put the model: the record function reads the plan's URI.
        artifacts = self.call(
            "Read model artifacts",
            "sagemaker",
            "describeTrainingJob",
            job,
            resources=self._prefixed("training-job"),
            result_selector={"uri": J.string_at("$.ModelArtifacts.S3ModelArtifacts")},
            result_path="$.quantize.artifacts",
        )
        self.catch(artifacts, fail)
        artifact_uri = sfn.Pass(
            self, "Use model artifacts", input_path="$.quantize.artifacts.uri", result_path="$.run.s3.artifact_uri"
        )
        artifacts.next(artifact_uri).next(then)
        create_parameters: dict[str, Any] = {
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
                # Valid on every instance type (unlike a volume key).
                "KmsKeyId": self._key.key_arn,
                # Uploads the model directory as files (<output>/<job>/output/model/),
                # which the endpoint then loads without unpacking.
                "CompressionType": "NONE",
            },
            # InstanceType, count, volume size and, on EBS-only instances, the volume key.
            "ResourceConfig": J.object_at("$.run.resources.training"),
            "VpcConfig": self._vpc(),
            "StoppingCondition": {"MaxRuntimeInSeconds": J.number_at("$.run.timing.quantize_max_seconds")},
            # The job reads its channels and writes its output through SageMaker;
            # the container itself needs no network.
            "EnableNetworkIsolation": True,
            "Tags": J.list_at("$.run.tags"),
        }
        return self._sagemaker_job(
            noun="training",
            step="Quantize",
            kind="training-job",
            api="TrainingJob",
            name_path="$.run.names.training_job",
            create_parameters=create_parameters,
            on_done=artifacts,
            fail=fail,
        )

    def _evaluate(self) -> sfn.IChainable:
        fail = self.fail_after_package
        # gate.json, not report.json: a task result over 256 KiB fails the state with
        # States.DataLimitExceeded, which States.ALL does not catch; the job bounds gate.json.
        read_gate = self.call(
            "Read gate",
            "s3",
            "getObject",
            {"Bucket": self._bucket.bucket_name, "Key": J.string_at("$.run.s3.gate_key")},
            resources=[self._bucket.arn_for_objects("models/*/reports/*")],
            iam_action="s3:GetObject",
            result_selector={"gate": J.string_to_json(J.string_at("$.Body"))},
            result_path="$.evaluation",
        )
        self.catch(read_gate, fail)
        passed = "$.evaluation.gate.passed"
        reasons = "$.evaluation.gate.reasons"
        gate = sfn.Choice(self, "Gate passed?")
        gate_failed = sfn.Pass(
            self,
            "Gate failed",
            parameters={"Error": "GateFailed", "Cause": J.json_to_string(J.list_at(reasons))},
            result_path="$.error",
        ).next(fail)
        gate.when(sfn.Condition.boolean_equals(passed, True), self._deploy())
        gate.otherwise(gate_failed)
        gate_invalid = self.error(
            "Gate invalid", "GateInvalid", "gate.json has no boolean passed with a list reasons"
        ).next(fail)
        well_formed = sfn.Choice(self, "Gate well-formed?")
        well_formed.when(
            sfn.Condition.and_(
                sfn.Condition.is_present(passed),
                sfn.Condition.is_boolean(passed),
                sfn.Condition.is_present(reasons),
            ),
            gate,
        )
        well_formed.otherwise(gate_invalid)
        read_gate.next(well_formed)

        create_parameters: dict[str, Any] = {
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
            # Instance, count, volume size and, on EBS-only instances, the volume key.
            "ProcessingResources": {"ClusterConfig": J.object_at("$.run.resources.processing")},
            "NetworkConfig": {"EnableNetworkIsolation": True, "VpcConfig": self._vpc()},
            "StoppingCondition": {"MaxRuntimeInSeconds": J.number_at("$.run.timing.evaluate_max_seconds")},
            "Tags": J.list_at("$.run.tags"),
        }
        return self._sagemaker_job(
            noun="evaluate",
            step="Evaluate",
            kind="processing-job",
            api="ProcessingJob",
            name_path="$.run.names.evaluate_job",
            create_parameters=create_parameters,
            on_done=read_gate,
            fail=fail,
        )

    def _deploy(self) -> sfn.IChainable:
        before = self.fail_after_package
        rollback = self.rollback
        endpoint = "$.run.baseline_endpoint"
        describe_endpoint = self.call(
            "Describe baseline endpoint",
            "sagemaker",
            "describeEndpoint",
            {"EndpointName": J.string_at(endpoint)},
            resources=self._endpoint_arns(),
            result_selector={"arn": J.string_at("$.EndpointArn")},
            result_path="$.endpoint",
        )
        self.catch(describe_endpoint, before)
        guard = self.invoke(
            "Check endpoint before canary",
            self._guard,
            {
                "action": "pre_canary",
                "endpoint": J.string_at(endpoint),
                "run_id": J.string_at("$.run.run_id"),
                "serving_variant": J.string_at("$.run.variants.serving_name"),
                "canary_config": J.string_at("$.run.names.endpoint_config"),
                "local_storage_families": J.list_at("$.run.instances.local_storage_families"),
                "candidate_local_storage": J.object_at("$.run.instances.serving_local_storage"),
                "candidate_instance_type": J.string_at("$.run.instances.serving"),
            },
            "$.guard",
        )
        self.catch(guard, before)
        refused = self.error_from("Canary refused", "CanaryRefused", "$.guard.reason").next(before)

        find_model = self.call(
            "Find candidate model",
            "sagemaker",
            "describeModel",
            {"ModelName": J.string_at("$.run.names.candidate_model")},
            resources=self._prefixed("model"),
            retry="none",
            result_selector={"found": True},
            result_path="$.lookups.candidate_model",
        )
        create_model = self.call(
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
                "VpcConfig": self._vpc(),
                "EnableNetworkIsolation": True,
                "Tags": J.list_at("$.run.tags"),
            },
            resources=self._prefixed("model"),
            retry="create",
        )
        # The serving variant copied whole (AMI, timeouts, volume, routing, ...) with the
        # first step's weight, then the candidate.
        canary_variants = J.array(
            J.json_merge(J.object_at("$.guard.serving"), J.object_at("$.run.canary.first_serving_weight")),
            J.string_at("$.run.canary.first_candidate"),
        )
        config_name = "$.run.names.endpoint_config"
        deploy = self._update_endpoint(
            "Deploy canary", endpoint=endpoint, config=config_name, retain_instance_counts=True
        )
        # Refused: nothing changed on the endpoint, so there is nothing to roll back.
        self.catch(deploy, before)
        ready = self._await_endpoint("Before canary", endpoint=endpoint, then=deploy, on_error=before)
        config_step = self._ensure_config(
            "canary",
            lookup="endpoint_config",
            name=config_name,
            variants=canary_variants,
            key_allowed=sfn.Condition.boolean_equals("$.guard.kms_allowed", True),
            then=ready,
            on_error=before,
        )
        self.catch(create_model, before)
        create_model.next(config_step)
        model_step = self.lookup(
            "candidate_model",
            describe=find_model,
            on_found=config_step,
            on_not_found=create_model,
            on_error=before,
            wait_seconds_path="$.run.timing.endpoint_poll_seconds",
        )

        tag_canary = self._tag_endpoint(
            "Tag endpoint canary",
            [*self._tags("canary"), {"Key": TAG_LAST_APPROVED, "Value": J.string_at("$.guard.last_approved")}],
        )
        self.catch(tag_canary, rollback)
        bake = self._bake_loop()
        deployed = self._await_endpoint(
            "Canary", endpoint=endpoint, expect_config=config_name, then=bake, on_error=rollback
        )
        deploy.next(tag_canary).next(deployed)

        go = sfn.Choice(self, "Canary may start?")
        go.when(
            sfn.Condition.and_(
                sfn.Condition.boolean_equals("$.guard.ok", True), sfn.Condition.boolean_equals("$.guard.resume", True)
            ),
            deployed,
        )
        go.when(sfn.Condition.boolean_equals("$.guard.ok", True), model_step)
        go.otherwise(refused)
        return describe_endpoint.next(guard).next(go)

    def _bake_loop(self) -> sfn.IChainable:
        """One iteration per canary step: check, set weights, wait until applied, bake, check again."""
        stopped = sfn.Fail(self, "Canary stopped", error="CanaryStopped", cause_path="$.check.reason")
        alarm = sfn.Fail(self, "Candidate alarm", error="CanaryAlarm", cause_path="$.check.reason")
        step_failed = sfn.Fail(self, "Step failed", error_path="$.error.Error", cause_path="$.error.Cause")
        step_done = sfn.Succeed(self, "Step healthy")
        check = {"since": "$.since", "endpoint": "$.endpoint", "run_id": "$.run_id", "alarms": "$.alarms"}

        before = self._check_canary("Check canary before step", **check)
        self.catch(before, step_failed)
        set_weights = self._set_weights(
            "Set canary weights",
            endpoint="$.endpoint",
            serving="$.serving_variant",
            candidate=J.number_at("$.step.candidate"),
            baseline=J.number_at("$.step.baseline"),
        )
        self.catch(set_weights, step_failed)
        after = self._check_canary("Check canary after bake", **check)
        self.catch(after, step_failed)
        healthy = sfn.Choice(self, "Candidate healthy?")
        healthy.when(sfn.Condition.boolean_equals("$.check.ok", True), step_done)
        healthy.otherwise(alarm)
        bake_wait = sfn.Wait(self, "Bake", time=sfn.WaitTime.seconds_path("$.step.bake_seconds"))
        bake_wait.next(after).next(healthy)
        applied = self._await_endpoint(
            "Weights",
            endpoint="$.endpoint",
            expect_config="$.config",
            expect_weights=[
                {"VariantName": J.string_at("$.serving_variant"), "Weight": J.number_at("$.step.baseline")},
                {"VariantName": CANDIDATE, "Weight": J.number_at("$.step.candidate")},
            ],
            then=bake_wait,
            on_error=step_failed,
            max_polls_path="$.max_polls",
            wait_seconds_path="$.poll_seconds",
        )
        set_weights.next(applied)
        ready = self._await_endpoint(
            "Before weights",
            endpoint="$.endpoint",
            then=set_weights,
            on_error=step_failed,
            max_polls_path="$.max_polls",
            wait_seconds_path="$.poll_seconds",
        )
        go_on = sfn.Choice(self, "Canary may go on?")
        go_on.when(sfn.Condition.boolean_equals("$.check.ok", True), ready)
        go_on.otherwise(stopped)
        before.next(go_on)

        started = sfn.Pass(
            self, "Canary started", parameters={"at": J.string_at("$$.State.EnteredTime")}, result_path="$.canary"
        )
        bake = sfn.Map(
            self,
            "Bake canary steps",
            items_path="$.run.canary.steps",
            # One step after the other: weights only rise while the candidate stays healthy.
            max_concurrency=1,
            item_selector={
                "step": J.object_at("$$.Map.Item.Value"),
                "endpoint": J.string_at("$.run.baseline_endpoint"),
                "config": J.string_at("$.run.names.endpoint_config"),
                "run_id": J.string_at("$.run.run_id"),
                "serving_variant": J.string_at("$.run.variants.serving_name"),
                "alarms": J.list_at("$.run.names.candidate_alarms"),
                # Every check looks back to the start of the canary: an alarm that fired
                # and cleared in an earlier step still stops the run.
                "since": J.string_at("$.canary.at"),
                "poll_seconds": J.number_at("$.run.timing.endpoint_poll_seconds"),
                "max_polls": J.number_at("$.run.timing.deploy_max_polls"),
            },
            result_path=J.DISCARD,
        )
        bake.item_processor(before)
        bake.add_catch(self.rollback, errors=[sfn.Errors.ALL], result_path="$.error")
        bake.next(self._promote())
        return started.next(bake)

    def _promote(self) -> sfn.IChainable:
        rollback = self.rollback
        endpoint = "$.run.baseline_endpoint"
        promoted_config = "$.run.names.promoted_config"
        check = {
            "since": "$.canary.at",
            "endpoint": endpoint,
            "run_id": "$.run.run_id",
            "alarms": "$.run.names.candidate_alarms",
        }
        stopped = self.error_from("Promotion stopped", "CanaryStopped", "$.check.reason").next(rollback)

        # One variant: the serving variant's name with the candidate's model, so the
        # serving variant's alarms (and its autoscaling target, lifted and restored around
        # an instance-type change) keep guarding it.
        promoted_variants = J.array(J.string_at("$.run.variants.promoted"))

        update = self._update_endpoint(
            "Promote candidate", endpoint=endpoint, config=promoted_config, retain_instance_counts=False
        )
        self.catch(update, rollback)

        tag = self._tag_endpoint(
            "Tag endpoint promoted",
            [*self._tags("promoted"), {"Key": TAG_PROMOTED_AT, "Value": J.string_at("$$.State.EnteredTime")}],
        )
        self.catch(tag, rollback)
        approve = self.call(
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
        self.catch(approve, rollback)
        notify = self._notify(
            "Notify promoted",
            {
                "outcome": "promoted",
                "execution": J.execution_id,
                "endpoint": J.string_at(endpoint),
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
                "gate": J.object_at("$.evaluation.gate"),
            },
        ).next(sfn.Succeed(self, "Promoted"))
        # A failed notification must not undo a healthy promotion.
        notify.add_catch(promoted, errors=[sfn.Errors.ALL], result_path="$.notify_error")
        notify.next(promoted)
        # Last, once nothing can roll the promotion back: the serving variant's autoscaling, lifted
        # for an instance-type change, goes back on the promoted variant. If that fails the
        # promotion stands (approved) and the run fails loudly, naming what to re-register.
        resume = self._resume_autoscaling("Resume autoscaling")
        self.catch(resume, self.fail_before_package)
        resume.next(notify)
        suspended = sfn.Choice(self, "Autoscaling suspended?")
        suspended.when(self._autoscaling_suspended(), resume)
        suspended.otherwise(notify)
        tag.next(approve).next(suspended)

        # An alarm while the promotion's UpdateEndpoint ran: the rollback function has
        # tagged rolling-back; the rollback path finds the endpoint wherever it is.
        after = self._check_canary("Check after promotion", **check)
        self.catch(after, rollback)
        still = sfn.Choice(self, "Promotion undisturbed?")
        still.when(sfn.Condition.boolean_equals("$.check.ok", True), tag)
        still.otherwise(stopped)
        after.next(still)
        landed = self._await_endpoint(
            "Promotion", endpoint=endpoint, expect_config=promoted_config, then=after, on_error=rollback
        )
        update.next(landed)

        # SageMaker refuses an UpdateEndpoint that changes an autoscaled variant's instance type:
        # read its scaling setup (kept in the payload), deregister it, and put it back afterwards.
        plan = self.invoke(
            "Plan autoscaling",
            self._guard,
            {
                "action": "autoscaling_plan",
                "endpoint": J.string_at(endpoint),
                "serving_variant": J.string_at("$.run.variants.serving_name"),
                "instance_type": J.string_at("$.run.instances.serving"),
                **self._autoscaling_record(),
            },
            "$.autoscaling",
        )
        self.catch(plan, rollback)
        suspend = self.invoke(
            "Suspend autoscaling",
            self._guard,
            {
                "action": "suspend_autoscaling",
                "captured": J.object_at("$.autoscaling.captured"),
                **self._autoscaling_record(),
            },
            J.DISCARD,
        )
        self.catch(suspend, rollback)
        suspend.next(update)
        blocked = self.error_from("Autoscaling blocks promotion", "AutoscalingBlocked", "$.autoscaling.reason")
        blocked.next(rollback)
        lift = sfn.Choice(self, "Autoscaling in the way?")
        lift.when(sfn.Condition.boolean_equals("$.autoscaling.ok", False), blocked)
        lift.when(sfn.Condition.boolean_equals("$.autoscaling.suspend", True), suspend)
        lift.otherwise(update)
        plan.next(lift)
        ready = self._await_endpoint("Before promotion", endpoint=endpoint, then=plan, on_error=rollback)
        config_step = self._ensure_config(
            "promoted",
            lookup="promoted_config",
            name=promoted_config,
            variants=promoted_variants,
            key_allowed=sfn.Condition.boolean_equals("$.run.instances.serving_local_storage", False),
            then=ready,
            on_error=rollback,
        )
        before = self._check_canary("Check before promotion", **check)
        self.catch(before, rollback)
        go = sfn.Choice(self, "Promotion may start?")
        go.when(sfn.Condition.boolean_equals("$.check.ok", True), config_step)
        go.otherwise(stopped)
        return before.next(go)


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
