"""Promotion: the candidate's model on the serving variant's name, alone on the endpoint; approve; notify.

A plain construct (see stacks/pipeline_workflow.py for why not ``StateMachineFragment``).
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn

from contracts.endpoint_tags import TAG_PROMOTED_AT
from contracts.run_plan import run_path
from stacks.workflow_blocks import ENDPOINT, PENDING, J, PipelineSteps


class Promotion(PipelineSteps):
    """After a healthy bake: check again, promoted config, (lift autoscaling,) update, check, tag, approve, notify.

    Input: ``$.canary.at``, ``$.run.baseline_endpoint``, ``$.run.run_id``, ``$.run.names.{promoted_config,
    candidate_alarms}``, ``$.run.variants.{promoted,serving_name}``, ``$.run.instances.{serving,
    serving_local_storage}``, ``$.run.s3.{report_key,bucket,autoscaling_key}``, ``$.run.timing.*``,
    ``$.run.tags``, ``$.record``, ``$.evaluation.gate``.
    Output: ``$.check``, ``$.lookups.promoted_config``, ``$.autoscaling`` (the captured scaling setup),
    ``$.autoscaling_restored``, ``$.endpoint_state``, ``$.polls.*``; the endpoint tagged ``promoted``
    (with ``llmq:promoted-at``), the package Approved (or, when ``$.run.require_human_review``, left
    PendingManualApproval for the operator's ``approve-after-review``; ``$.approval.status`` says which),
    an ``outcome: promoted`` message; the execution
    succeeds ("Promoted") with ``{outcome, run, record, gate}``.
    Errors: up to and including the approval (``CanaryStopped``, ``AutoscalingBlocked``, endpoint or task
    errors) -> ``rollback`` with ``$.error``; a failed autoscaling resume after approval -> ``failed``
    (notify, fail: the promotion stands); a failed notification is caught into ``$.notify_error``.
    """

    def build(self, *, rollback: sfn.IChainable, failed: sfn.IChainable) -> sfn.IChainable:
        endpoint = ENDPOINT
        promoted_config = run_path("names.promoted_config")
        check = {
            "since": "$.canary.at",
            "endpoint": endpoint,
            "run_id": run_path("run_id"),
            "alarms": run_path("names.candidate_alarms"),
        }
        stopped = self.error_from("Promotion stopped", "CanaryStopped", "$.check.reason").next(rollback)

        # One variant: the serving variant's name with the candidate's model, so the
        # serving variant's alarms (and its autoscaling target, lifted and restored around
        # an instance-type change) keep guarding it.
        promoted_variants = J.array(J.string_at(run_path("variants.promoted")))

        update = self._update_endpoint(
            "Promote candidate", endpoint=endpoint, config=promoted_config, retain_instance_counts=False
        )
        self.catch(update, rollback)

        tag = self._tag_endpoint(
            "Tag endpoint promoted",
            [*self._tags("promoted"), {"Key": TAG_PROMOTED_AT, "Value": J.string_at("$$.State.EnteredTime")}],
        )
        self.catch(tag, rollback)
        review, approval_done = self._approval(rollback)
        notify = self._notify(
            "Notify promoted",
            {
                "outcome": "promoted",
                "execution": J.execution_id,
                "endpoint": J.string_at(endpoint),
                "model_package_arn": J.string_at("$.record.model_package_arn"),
                "artifact_uri": J.string_at("$.record.artifact_uri"),
                "report_key": J.string_at(run_path("s3.report_key")),
                "model_package_status": J.string_at("$.approval.status"),
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
        self.catch(resume, failed)
        resume.next(notify)
        suspended = sfn.Choice(self, "Autoscaling suspended?")
        suspended.when(self._autoscaling_suspended(), resume)
        suspended.otherwise(notify)
        tag.next(review)
        for done in approval_done:
            done.next(suspended)

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
        plan = self._ask_guard(
            "Plan autoscaling",
            "autoscaling_plan",
            "$.autoscaling",
            endpoint=endpoint,
            serving_variant=J.string_at(run_path("variants.serving_name")),
            instance_type=J.string_at(run_path("instances.serving")),
            **self._autoscaling_record(),
        )
        self.catch(plan, rollback)
        suspend = self._autoscaling_step("Suspend autoscaling", "suspend_autoscaling", J.DISCARD)
        self.catch(suspend, rollback)
        # Wait for InService after the lift, not before it: a scaling activity that began before the
        # deregister has ended then, and no new one starts; SageMaker refuses an update meanwhile.
        ready = self._await_endpoint("Before promotion", endpoint=endpoint, then=update, on_error=rollback)
        suspend.next(ready)
        blocked = self.error_from("Autoscaling blocks promotion", "AutoscalingBlocked", "$.autoscaling.reason")
        blocked.next(rollback)
        lift = sfn.Choice(self, "Autoscaling in the way?")
        lift.when(sfn.Condition.boolean_equals("$.autoscaling.ok", False), blocked)
        lift.when(sfn.Condition.boolean_equals("$.autoscaling.suspend", True), suspend)
        lift.otherwise(ready)
        plan.next(lift)
        config_step = self._ensure_config(
            "promoted",
            lookup="promoted_config",
            name=promoted_config,
            variants=promoted_variants,
            key_allowed=sfn.Condition.boolean_equals(run_path("instances.serving_local_storage"), False),
            then=plan,
            on_error=rollback,
        )
        before = self._check_canary("Check before promotion", **check)
        self.catch(before, rollback)
        go = sfn.Choice(self, "Promotion may start?")
        go.when(sfn.Condition.boolean_equals("$.check.ok", True), config_step)
        go.otherwise(stopped)
        return before.next(go)

    def _approval(self, rollback: sfn.IChainable) -> tuple[sfn.Choice, list[sfn.Pass]]:
        """Approve the package, or leave it PendingManualApproval when the stage asks for a human review.

        Either way ``$.approval.status`` says what the package is now; returns the entry and the two ends.
        """
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
        approved = sfn.Pass(
            self, "Package approved", result=sfn.Result.from_object({"status": "Approved"}), result_path="$.approval"
        )
        # The stage asks for a human review: the package stays PendingManualApproval (as the record step
        # registered it) until an operator approves it after the review says go (approve-after-review).
        left_for_review = sfn.Pass(
            self,
            "Package left for review",
            result=sfn.Result.from_object({"status": PENDING}),
            result_path="$.approval",
        )
        review = sfn.Choice(self, "Human review required?")
        review.when(sfn.Condition.boolean_equals(run_path("require_human_review"), True), left_for_review)
        review.otherwise(approve)
        approve.next(approved)
        return review, [approved, left_for_review]
