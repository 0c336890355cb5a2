"""The pipeline's own building blocks, on top of stacks/workflow_steps.py: the resources every fragment shares.

``WorkflowResources`` is the one object a fragment of the state machine gets
(instead of a long parameter list): the stage's ``SharedResources``
(stacks/shared_resources.py) plus the SageMaker and evaluate roles, the outcome topic
and the canary guard function. ``PipelineSteps`` turns it into states: IAM-scoped ARNs,
endpoint tags, weights, updates, endpoint configs, bounded endpoint waits,
canary checks, autoscaling and notifications. Each fragment
(stacks/workflow_*.py) subclasses it; the states it makes are children of that
fragment's construct, and their names are their construct ids, so moving a
state between fragments does not rename it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from contracts.data_capture import data_capture_config
from contracts.endpoint_tags import (
    CANDIDATE_VARIANT,
    TAG_MODEL,
    TAG_PACKAGE,
    TAG_PHASE,
    TAG_RUN,
)
from contracts.run_plan import run_path
from stacks.shared_resources import SharedResources
from stacks.workflow_steps import StepBuilder, retry_sns

J = sfn.JsonPath
PENDING = "PendingManualApproval"
# The candidate variant's name and the endpoint tags are shared with the rollback function and
# the canary guard: contracts/endpoint_tags.py.
CANDIDATE = CANDIDATE_VARIANT
ENDPOINT = run_path("baseline_endpoint")
# The next fragment, built when the transition into it is wired: the order in which states are
# connected decides the order of the definition's States (CDK walks the graph from the start),
# so building a fragment at that point keeps the definition byte for byte what it was.
Later = Callable[[], sfn.IChainable]


@dataclass(frozen=True)
class WorkflowResources:
    """What the states refer to: infrastructure only (every name and URI comes from the run plan, ``$.run``).

    The stage's ``SharedResources`` (prefix, monitored endpoints, bucket, key, subnets, security
    group) plus what the pipeline stack makes for the states: the SageMaker execution role (quantize
    job, candidate model), the evaluate job's role (stacks/evaluate_role.py), the outcome topic and
    the canary guard function.
    """

    shared: SharedResources
    sagemaker_role: iam.IRole
    evaluate_role: iam.IRole
    topic: sns.ITopic
    guard_function: lambda_.IFunction


class PipelineSteps(StepBuilder):
    """Makes the pipeline's states inside one construct scope (a fragment of the state machine)."""

    def __init__(self, scope: Construct, construct_id: str, resources: WorkflowResources) -> None:
        super().__init__(scope, construct_id)
        shared = resources.shared
        self.resources = resources
        self._stack = Stack.of(self)
        self._prefix = shared.prefix
        self._endpoint_names = list(shared.config.monitored_endpoints) or [f"{shared.prefix}-*"]
        self._bucket = shared.bucket
        self._key = shared.key
        self._role = resources.sagemaker_role
        self._subnet_ids = [subnet.subnet_id for subnet in shared.subnet_list()]
        self._security_group = shared.security_group
        self._topic = resources.topic
        self._guard = resources.guard_function

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
            {"Key": TAG_MODEL, "Value": J.string_at(run_path("model_name"))},
            {"Key": TAG_RUN, "Value": J.string_at(run_path("run_id"))},
            {"Key": TAG_PACKAGE, "Value": J.string_at("$.record.model_package_arn")},
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

    def _data_capture(self) -> dict[str, Any] | None:
        """The run's DataCaptureConfig (under ``models/<model>/<run>/capture/``, the project key), or None when
        the stage captures nothing. Its KmsKeyId is for S3, not a volume: valid on NVMe instances too."""
        capture = self.resources.shared.config.data_capture
        if not capture.enabled:
            return None
        return data_capture_config(
            J.string_at(run_path("s3.capture_uri")), capture.sampling_percentage, self._key.key_arn
        )

    def _create_config(self, state_id: str, *, name: str, variants: Any, with_key: bool) -> tasks.CallAwsService:
        parameters: dict[str, Any] = {
            "EndpointConfigName": J.string_at(name),
            "ProductionVariants": variants,
            "Tags": J.list_at(run_path("tags")),
        }
        if with_key:
            parameters["KmsKeyId"] = self._key.key_arn
        capture = self._data_capture()
        if capture:
            parameters["DataCaptureConfig"] = capture
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
            wait_seconds_path=run_path("timing.endpoint_poll_seconds"),
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
        max_polls_path: str = run_path("timing.deploy_max_polls"),
        wait_seconds_path: str = run_path("timing.endpoint_poll_seconds"),
        counter_root: str = "$.polls",
        error_path: str = "$.error",
    ) -> sfn.IChainable:
        """Poll until the endpoint is InService (and on ``expect_config`` with ``expect_weights``), bounded."""
        expected: dict[str, Any] = {}
        if expect_config:
            expected["expect_config"] = J.string_at(expect_config)
        if expect_weights:
            expected["expect_weights"] = expect_weights
        state = self._ask_guard(
            f"{name} endpoint state", "endpoint_state", "$.endpoint_state", endpoint=endpoint, **expected
        )
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

    def _ask_guard(
        self, state_id: str, action: str, result_path: str, *, endpoint: str | None = None, **fields: Any
    ) -> tasks.LambdaInvoke:
        """A request to the canary guard (lambda/canary_guard/): ``action``, the endpoint (a path), its fields."""
        payload: dict[str, Any] = {"action": action}
        if endpoint is not None:
            payload["endpoint"] = J.string_at(endpoint)
        return self.invoke(state_id, self._guard, {**payload, **fields}, result_path)

    def _check_canary(
        self, state_id: str, *, since: str, endpoint: str, run_id: str, alarms: str
    ) -> tasks.LambdaInvoke:
        return self._ask_guard(
            state_id,
            "canary_check",
            "$.check",
            endpoint=endpoint,
            run_id=J.string_at(run_id),
            since=J.string_at(since),
            alarm_names=J.list_at(alarms),
        )

    def _autoscaling_step(self, state_id: str, action: str, result_path: str) -> tasks.LambdaInvoke:
        """Suspend or resume the captured autoscaling setup, kept in its S3 record."""
        captured = J.object_at("$.autoscaling.captured")
        return self._ask_guard(state_id, action, result_path, captured=captured, **self._autoscaling_record())

    def _resume_autoscaling(self, state_id: str) -> tasks.LambdaInvoke:
        return self._autoscaling_step(state_id, "resume_autoscaling", "$.autoscaling_restored")

    @staticmethod
    def _autoscaling_record() -> dict[str, Any]:
        """Where the lifted scaling setup is kept (durable: a stopped execution leaves it for the rerun)."""
        return {"bucket": J.string_at(run_path("s3.bucket")), "record_key": J.string_at(run_path("s3.autoscaling_key"))}

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


@dataclass(frozen=True)
class JobType:
    """What tells one SageMaker job from another to ``SageMakerJob`` (stacks/workflow_jobs.py).

    ``noun`` names its states ("training" -> "Create training job"), ``step`` its poll loop, its
    ``$.<step>.status`` and its errors (``<Step>JobFailed``, ``<Step>JobStopped``, ``<Step>TimedOut``);
    ``kind`` is the ARN resource type and ``api`` the name in Describe/Create/Stop<api>; ``name_path``
    holds the job's name in the run plan.
    """

    noun: str
    step: str
    kind: str
    api: str
    name_path: str
