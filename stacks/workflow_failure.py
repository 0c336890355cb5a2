"""Failure paths of the pipeline: notify and fail, reject the package, roll the endpoint back.

Three fragments, chosen by how far a run got (stacks/pipeline_workflow.py wires
every catch to one of them). Each is a plain construct (``PipelineSteps``) whose
``build()`` returns its entry state; see stacks/pipeline_workflow.py for why fragments are
plain constructs rather than ``StateMachineFragment``.
"""

from __future__ import annotations

import functools

from aws_cdk import aws_stepfunctions as sfn

from contracts.run_plan import run_path
from stacks.workflow_blocks import CANDIDATE, ENDPOINT, J, PipelineSteps


class NotifyFailure(PipelineSteps):
    """Before a model package exists: publish the failure, then fail the execution.

    Input: ``$.error.Error`` and ``$.error.Cause`` (what a catch or an error state wrote).
    Output: an ``outcome: failed`` message on the outcome topic; the execution fails
    ("Failed") with that error and cause.
    Errors: a failed publish is caught into ``$.notify_error`` and still fails the execution.
    """

    def build(self) -> sfn.IChainable:
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
        return notify_failed


class RejectPackage(PipelineSteps):
    """After the model package, before the endpoint changed: reject the package, then ``notify``.

    Input: ``$.record.model_package_arn``, ``$.error.Error`` (into the approval description).
    Output: the package's status Rejected; then ``notify`` (NotifyFailure) with ``$`` unchanged.
    Errors: a failed rejection is caught into ``$.cleanup_error`` and goes on to ``notify``.
    """

    def build(self, *, notify: sfn.IChainable) -> sfn.IChainable:
        return self._reject("Reject package", "{}: see execution {}", notify)


class Rollback(PipelineSteps):
    """Once the endpoint changed: traffic to the serving variant, then the endpoint on its last approved config.

    Input: ``$.run.baseline_endpoint``, ``$.run.variants.serving_name``, ``$.run.names.endpoint_config``,
    ``$.guard.last_approved`` (the config that served before the run), ``$.autoscaling`` (when a
    promotion lifted it), ``$.record.model_package_arn``, ``$.error`` (why it rolls back), the
    ``$.run.timing`` poll settings.
    Output: writes ``$.polls.rollback_attempts``, ``$.polls.{rollback,traffic_back,restore}``,
    ``$.endpoint_state``; tags the endpoint ``llmq:phase`` = ``rolled-back`` when the last approved
    config is InService, else ``rollback-failed``; rejects the package; notifies the outcome.
    Errors: it always ends failed: "Rolled back" (the original ``$.error``) or "Rollback failed"
    (``RollbackFailed``, the rollback's own error in ``$.rollback_error`` kept in the cause). A refused
    mutation is tried again from the wait, 3 attempts; tag, reject, resume and notify failures are
    caught into ``$.cleanup_error`` / ``$.notify_error`` and the path goes on.
    """

    def build(self) -> sfn.IChainable:
        """Traffic to the serving variant, then the endpoint on its last approved config; tag what really happened."""
        endpoint = ENDPOINT
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
            return self._resume_lifted_autoscaling(outcome, then=tag)

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
        # The rollback's own failures go to $.rollback_error: $.error keeps why it rolls back.
        await_endpoint = functools.partial(self._await_endpoint, endpoint=endpoint, error_path="$.rollback_error")
        restore = self._update_endpoint(
            "Restore last approved config", endpoint=endpoint, config=last_approved, retain_instance_counts=True
        )
        restored = await_endpoint(
            "Restore",
            expect_config=last_approved,
            then=rolled_back,
            on_error=keep_reason,
            counter_root="$.polls.restore",
        )
        restore.next(restored)

        shift = self._set_weights(
            "Restore serving weights",
            endpoint=endpoint,
            serving=run_path("variants.serving_name"),
            candidate=0,
            baseline=100,
        )
        shifted = await_endpoint(
            "Traffic back",
            expect_weights=[
                {"VariantName": J.string_at(run_path("variants.serving_name")), "Weight": 100},
                {"VariantName": CANDIDATE, "Weight": 0},
            ],
            then=restore,
            # Weights that did not apply: the config change below still takes traffic back.
            on_error=restore,
            counter_root="$.polls.traffic_back",
        )
        shift.next(shifted)

        where = sfn.Choice(self, "Endpoint runs what?")
        where.when(sfn.Condition.string_equals_json_path("$.endpoint_state.config", last_approved), rolled_back)
        where.when(
            sfn.Condition.string_equals_json_path("$.endpoint_state.config", run_path("names.endpoint_config")), shift
        )
        where.otherwise(restore)
        ready = await_endpoint("Rollback", then=where, on_error=keep_reason, counter_root="$.polls.rollback")
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

    def _resume_lifted_autoscaling(self, outcome: str, *, then: sfn.IChainable) -> sfn.IChainable:
        """A promotion that lifted the serving variant's autoscaling: put it back on the restored variant.

        Not while the endpoint still runs the promoted config (the restore failed): a registered
        target would make SageMaker refuse the instance-type change back. The setup then stays in its
        S3 record (run plan ``s3.autoscaling_key``), which the rollback function, a rerun or a person
        restores from, and the error's cause says so.
        """
        resume = self._resume_autoscaling(f"Resume autoscaling ({outcome})")
        not_restored = sfn.Pass(
            self,
            f"Autoscaling not restored ({outcome})",
            parameters={
                "Error": J.string_at("$.error.Error"),
                "Cause": J.format(
                    "{}; the serving variant's autoscaling is not registered again ({}): its setup is in s3://{}/{}",
                    J.string_at("$.error.Cause"),
                    J.string_at("$.cleanup_error.Cause"),
                    J.string_at(run_path("s3.bucket")),
                    J.string_at(run_path("s3.autoscaling_key")),
                ),
            },
            result_path="$.error",
        ).next(then)
        resume.add_catch(not_restored, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        resume.next(then)
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
                sfn.Condition.string_equals_json_path("$.endpoint_state.config", run_path("names.promoted_config")),
            ),
            still_promoted,
        )
        suspended.when(self._autoscaling_suspended(), resume)
        suspended.otherwise(then)
        return suspended
