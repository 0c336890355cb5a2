"""The per-model workflow: validate -> quantize -> record -> deploy at weight 0 -> evaluate -> gate -> bake -> promote.

The candidate is judged where it will serve, before any user sees it: it joins the baseline
endpoint as a second production variant at weight 0 (the serving variant keeps all user
traffic), the evaluate job invokes both variants there, and only a passed gate starts the bake
(weights rise step by step); anything else rolls the endpoint back to its last approved config.

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
- once the endpoint changed (the candidate at weight 0 under evaluation, a failed or
  invalid gate, a failed/stopped/timed-out evaluate job, the bake, the promotion): traffic
  back to the serving variant, then the
  endpoint back on its last approved (baseline-only) config so no candidate
  instance keeps billing; tag ``rolled-back`` only when that config is
  InService, else ``rollback-failed``; reject the package, notify, fail.

Composition. The state machine is built from fragments, each a construct class with a
docstring giving its input (the JSONPaths it reads), output (what it writes) and errors
(where it goes on failure):

- stacks/workflow_failure.py: ``NotifyFailure``, ``RejectPackage``, ``Rollback``;
- stacks/workflow_jobs.py: ``SageMakerJob`` (find or create, poll, failure reason, stop on
  timeout) serving ``QuantizeModel`` and ``EvaluateModel`` (with the gate);
- stacks/workflow_canary.py: ``DeployCandidate`` (guard, model, config with the candidate at
  weight 0, deploy, tag ``evaluating``) and ``BakeCanary`` (tag ``canary``, bake loop);
- stacks/workflow_promotion.py: ``Promotion``;
- stacks/workflow_blocks.py: ``WorkflowResources`` (the one object a fragment gets) and
  ``PipelineSteps``, the building blocks they share (on stacks/workflow_steps.py).

Fragments are plain constructs, not ``sfn.StateMachineFragment``: almost every exit of a
fragment is a Choice branch or a Catch handler whose target is known when the fragment is
built (the next fragment, a failure path), so each fragment's ``build`` takes its
continuations as arguments (``then``, ``fail``, ``before``, ``rollback``), wires them where
the transition is made and returns the fragment's entry state (an ``IChainable``). The
constructor is ``PipelineSteps``' own (scope, id, ``WorkflowResources``) for every fragment.
``StateMachineFragment`` models one entry and open ``end_states`` that a later ``.next()``
chains, which fits a linear fragment but neither a Choice's branches nor catches; its one
other feature, ``prefix_states``, renames states, and state names must not change
(executions, the CLI's output and the tests refer to them). A state's name is its
construct id, whatever construct holds it, so the synthesized definition is the one the
single-class workflow produced (compared when this was split).
"""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.workflow_blocks import PENDING, J, PipelineSteps, WorkflowResources
from stacks.workflow_canary import BakeCanary, DeployCandidate
from stacks.workflow_failure import NotifyFailure, RejectPackage, Rollback
from stacks.workflow_jobs import EvaluateModel, QuantizeModel
from stacks.workflow_promotion import Promotion


class PipelineWorkflow(PipelineSteps):
    """States of the per-model pipeline; ``self.start`` is the definition's first state.

    Input: the execution input (the run spec), whole, to the validate function.
    Output: the validated plan at ``$.run``, the model package at ``$.record``; the fragments
    add theirs (see each one).
    Errors: before the package -> ``NotifyFailure``; after it -> ``RejectPackage``; once the
    endpoint changed (from "Deploy canary" on, the evaluation included) -> ``Rollback``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        resources: WorkflowResources,
        *,
        validate_function: lambda_.IFunction,
        record_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id, resources)
        notify = NotifyFailure(self, "NotifyFailure", resources).build()
        reject = RejectPackage(self, "RejectPackage", resources).build(notify=notify)
        rollback = Rollback(self, "Rollback", resources).build()

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
        self.catch(validate, notify)
        start = sfn.Pass(self, "Start run", parameters={"run": J.object_at("$.validation.outcome.run")})
        invalid = sfn.Pass(
            self,
            "Invalid input",
            parameters={"error": {"Error": "InvalidInput", "Cause": J.string_at("$.validation.outcome.message")}},
        )
        invalid.next(notify)
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
        self.catch(record, notify)
        start.next(QuantizeModel(self, "Quantize", resources).build(then=record, fail=notify))

        already = sfn.Pass(
            self, "Run already decided", parameters={"outcome": "already-decided", "record": J.object_at("$.record")}
        ).next(sfn.Succeed(self, "Nothing to do"))
        decided = sfn.Choice(self, "Package pending?")

        # Built where the transition into them is wired (stacks/workflow_blocks.py: Later).
        def promotion() -> sfn.IChainable:
            return Promotion(self, "Promotion", resources).build(rollback=rollback, failed=notify)

        def bake() -> sfn.IChainable:
            return BakeCanary(self, "Bake", resources).build(then=promotion, rollback=rollback)

        # The candidate is on the endpoint before the evaluation: every evaluation failure rolls back.
        def evaluate() -> sfn.IChainable:
            return EvaluateModel(self, "Evaluate", resources).build(on_pass=bake, fail=rollback)

        deploy = DeployCandidate(self, "Canary", resources).build(then=evaluate, before=reject, rollback=rollback)
        decided.when(sfn.Condition.string_equals("$.record.approval_status", PENDING), deploy)
        decided.otherwise(already)
        record.next(decided)
        self.start: sfn.IChainable = validate
