"""The candidate on the baseline endpoint: deployed at weight 0 (evaluated there), then baked step by step.

Two fragments, plain constructs (see stacks/pipeline_workflow.py for why not ``StateMachineFragment``):
``DeployCandidate`` (guard, candidate model, canary config with the candidate at weight 0, deploy, tag
``evaluating``) runs before the evaluate job; ``BakeCanary`` (tag ``canary``, the bake loop over the
plan's steps) after a passed gate.
"""

from __future__ import annotations

import functools

from aws_cdk import aws_stepfunctions as sfn

from contracts.endpoint_tags import PHASE_CANARY, PHASE_EVALUATING, TAG_LAST_APPROVED
from contracts.run_plan import run_path
from stacks.workflow_blocks import CANDIDATE, ENDPOINT, J, Later, PipelineSteps


class DeployCandidate(PipelineSteps):
    """Put the candidate beside the serving variant on the baseline endpoint, at weight 0, for the evaluation.

    The canary config is the serving variant copied whole (its weight kept: it keeps all user traffic)
    and the candidate at ``InitialVariantWeight`` 0; the evaluate job reaches the candidate by
    ``TargetVariant``. The endpoint is tagged ``evaluating`` (with the last approved config), a phase
    the rollback function leaves to the state machine.

    Input: ``$.run.baseline_endpoint``, ``$.run.run_id``, ``$.run.variants.serving_name``,
    ``$.run.names.{endpoint_config,candidate_model}``, ``$.run.instances.*``, ``$.run.images.serving``,
    ``$.run.serving_environment``, ``$.run.canary.candidate_at_zero``,
    ``$.run.timing.{endpoint_poll_seconds,deploy_max_polls}``, ``$.run.tags``,
    ``$.record.{artifact_uri,model_package_arn}``.
    Output: ``$.endpoint.arn``, ``$.guard`` (the canary guard's verdict: serving variant, last approved
    config, kms_allowed, resume), ``$.lookups.*``, ``$.endpoint_state``, ``$.polls.*``; the endpoint
    InService on the canary config and tagged ``llmq:phase`` = ``evaluating``; then ``then()`` (the
    evaluation, built when this exit is wired). A rerun of the run whose canary config is deployed
    resumes at the wait for it.
    Errors: before the endpoint changed (guard error or ``CanaryRefused``, model/config/deploy errors,
    ``EndpointUpdateFailed``/``EndpointUpdateTimedOut`` before deploying) -> ``before`` (reject the
    package); once "Deploy canary" succeeded (tag, the wait for the canary config) -> ``rollback``,
    with ``$.error``.
    """

    def build(self, *, then: Later, before: sfn.IChainable, rollback: sfn.IChainable) -> sfn.IChainable:
        endpoint = ENDPOINT
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
        guard = self._ask_guard(
            "Check endpoint before canary",
            "pre_canary",
            "$.guard",
            endpoint=endpoint,
            run_id=J.string_at(run_path("run_id")),
            serving_variant=J.string_at(run_path("variants.serving_name")),
            canary_config=J.string_at(run_path("names.endpoint_config")),
            local_storage_families=J.list_at(run_path("instances.local_storage_families")),
            candidate_local_storage=J.object_at(run_path("instances.serving_local_storage")),
            candidate_instance_type=J.string_at(run_path("instances.serving")),
        )
        self.catch(guard, before)
        refused = self.error_from("Canary refused", "CanaryRefused", "$.guard.reason").next(before)

        find_model = self.call(
            "Find candidate model",
            "sagemaker",
            "describeModel",
            {"ModelName": J.string_at(run_path("names.candidate_model"))},
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
                "ModelName": J.string_at(run_path("names.candidate_model")),
                "ExecutionRoleArn": self._role.role_arn,
                "PrimaryContainer": {
                    "Image": J.string_at(run_path("images.serving")),
                    "ModelDataSource": {
                        "S3DataSource": {
                            "S3Uri": J.string_at("$.record.artifact_uri"),
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        }
                    },
                    "Environment": J.object_at(run_path("serving_environment")),
                },
                "VpcConfig": self._vpc(),
                "EnableNetworkIsolation": True,
                "Tags": J.list_at(run_path("tags")),
            },
            resources=self._prefixed("model"),
            retry="create",
        )
        # The serving variant copied whole (AMI, timeouts, volume, routing, its weight: all user
        # traffic stays on it), then the candidate at weight 0.
        canary_variants = J.array(J.string_at("$.guard.serving"), J.string_at(run_path("canary.candidate_at_zero")))
        config_name = run_path("names.endpoint_config")
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
            wait_seconds_path=run_path("timing.endpoint_poll_seconds"),
        )

        tag_evaluating = self._tag_endpoint(
            "Tag endpoint evaluating",
            [*self._tags(PHASE_EVALUATING), {"Key": TAG_LAST_APPROVED, "Value": J.string_at("$.guard.last_approved")}],
        )
        self.catch(tag_evaluating, rollback)
        deployed = self._await_endpoint(
            "Canary", endpoint=endpoint, expect_config=config_name, then=then(), on_error=rollback
        )
        deploy.next(tag_evaluating).next(deployed)

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


class BakeCanary(PipelineSteps):
    """After a passed gate: tag the endpoint ``canary``, then raise the candidate's weight step by step.

    Input: ``$.run.baseline_endpoint``, ``$.run.run_id``, ``$.run.variants.serving_name``,
    ``$.run.names.{endpoint_config,candidate_alarms}``, ``$.run.canary.steps``,
    ``$.run.timing.{endpoint_poll_seconds,deploy_max_polls}``, ``$.guard.last_approved``, ``$.endpoint.arn``,
    ``$.record.model_package_arn``.
    Output: the endpoint tagged ``llmq:phase`` = ``canary`` (with the last approved config);
    ``$.canary.at`` (when the bake started: every alarm check looks back to it, not to the evaluation's
    load test); each step's weights set with UpdateEndpointWeightsAndCapacities, the first step's too
    (the candidate was at weight 0); each step's state is discarded. After the last healthy step:
    ``then()`` (built when the bake loop's exit is wired).
    Errors: tag failure, ``CanaryStopped``, ``CanaryAlarm`` or a step's error -> ``rollback``, with ``$.error``.
    """

    def build(self, *, then: Later, rollback: sfn.IChainable) -> sfn.IChainable:
        tag_canary = self._tag_endpoint(
            "Tag endpoint canary",
            [*self._tags(PHASE_CANARY), {"Key": TAG_LAST_APPROVED, "Value": J.string_at("$.guard.last_approved")}],
        )
        self.catch(tag_canary, rollback)
        return tag_canary.next(self._bake_loop(then=then, rollback=rollback))

    def _bake_loop(self, *, then: Later, rollback: sfn.IChainable) -> sfn.IChainable:
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
        # Inside the Map: the item's endpoint and timing; any failure ends the step.
        await_endpoint = functools.partial(
            self._await_endpoint,
            endpoint="$.endpoint",
            on_error=step_failed,
            max_polls_path="$.max_polls",
            wait_seconds_path="$.poll_seconds",
        )
        applied = await_endpoint(
            "Weights",
            expect_config="$.config",
            expect_weights=[
                {"VariantName": J.string_at("$.serving_variant"), "Weight": J.number_at("$.step.baseline")},
                {"VariantName": CANDIDATE, "Weight": J.number_at("$.step.candidate")},
            ],
            then=bake_wait,
        )
        set_weights.next(applied)
        ready = await_endpoint("Before weights", then=set_weights)
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
            items_path=run_path("canary.steps"),
            # One step after the other: weights only rise while the candidate stays healthy.
            max_concurrency=1,
            item_selector={
                "step": J.object_at("$$.Map.Item.Value"),
                "endpoint": J.string_at(run_path("baseline_endpoint")),
                "config": J.string_at(run_path("names.endpoint_config")),
                "run_id": J.string_at(run_path("run_id")),
                "serving_variant": J.string_at(run_path("variants.serving_name")),
                "alarms": J.list_at(run_path("names.candidate_alarms")),
                # Every check looks back to the start of the canary: an alarm that fired
                # and cleared in an earlier step still stops the run.
                "since": J.string_at("$.canary.at"),
                "poll_seconds": J.number_at(run_path("timing.endpoint_poll_seconds")),
                "max_polls": J.number_at(run_path("timing.deploy_max_polls")),
            },
            result_path=J.DISCARD,
        )
        bake.item_processor(before)
        bake.add_catch(rollback, errors=[sfn.Errors.ALL], result_path="$.error")
        bake.next(then())
        return started.next(bake)
