"""Integration: every botocore call made while a principal acts is validated, authorized and recorded.

Usage (conftest/harness)::

    from tests.aws_conformance import hook
    from tests.aws_conformance.iam import PolicyEvaluator, policies_of_role

    calls: list[hook.CallRecord] = []
    hook.install(monkeypatch, record=calls)                      # once per test, inside mock_aws
    sm_role = PolicyEvaluator(policies_of_role(resolver, stack, "StateMachineRoleLogicalId"), name=role_arn)
    hook.install_step_functions_principal(monkeypatch, sm_role)  # moto's executor acts as the state machine role
    with hook.acting_as(lambda_role):                            # e.g. around a Lambda handler run in-process
        ...

Rules:

- A principal is active when ``acting_as`` set it (a ContextVar) or the client was created by moto's Step
  Functions executor for a task (``install_step_functions_principal`` tags those clients). No principal: test
  setup code, unrestricted and unrecorded.
- Calls made *while* a checked call is inside moto (a shim writing the job's outputs, a Lambda handler run by the
  invoke shim) run with no principal unless they set one: AWS's own side of the call is not the caller's.
- Order, as in AWS: request validation (400 ValidationException), then IAM (AccessDenied), then moto.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.model import ServiceModel

from tests.aws_conformance.errors import name_client_error
from tests.aws_conformance.iam import PolicyEvaluator, access_denied_message, required_authorizations
from tests.aws_conformance.requests import check_exact_member_names, check_request, validation_message

DEFAULT_ACCOUNT = "123456789012"
_PRINCIPAL: ContextVar[PolicyEvaluator | None] = ContextVar("aws_conformance_principal", default=None)
_CLIENT_PRINCIPAL = "_aws_conformance_principal"

# Error code and HTTP status a service returns for a failed validation / authorization.
VALIDATION_ERROR: dict[str, tuple[str, int]] = {
    "cloudwatch": ("ValidationError", 400),  # CloudWatch CommonErrors: ValidationError
    "sns": ("InvalidParameter", 400),  # SNS models InvalidParameterException with code InvalidParameter
}
ACCESS_DENIED: dict[str, tuple[str, int]] = {
    "sagemaker": (
        "AccessDeniedException",
        400,
    ),  # seen: (Service: AmazonSageMaker; Status Code: 400; ... AccessDeniedException)
    "s3": ("AccessDenied", 403),
    "sns": ("AuthorizationError", 403),
    "cloudwatch": ("AccessDenied", 403),
    "lambda": ("AccessDeniedException", 403),
}


@dataclass(frozen=True)
class CallRecord:
    service: str
    operation: str
    params: dict[str, Any]
    principal: str


def current_principal() -> PolicyEvaluator | None:
    return _PRINCIPAL.get()


@contextmanager
def acting_as(evaluator: PolicyEvaluator | None) -> Iterator[None]:
    """Calls in this block (this thread/context) are made as ``evaluator``; None: unrestricted."""
    token = _PRINCIPAL.set(evaluator)
    try:
        yield
    finally:
        _PRINCIPAL.reset(token)


@functools.cache
def service_model(service_name: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service_name)


def _client_error(code: str, message: str, status: int, operation: str, client: Any = None) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": str(uuid.uuid4())},
    }
    cls = client.exceptions.from_code(code) if client is not None else ClientError
    error: ClientError = cls(response, operation)
    return error


def check_call(
    principal: PolicyEvaluator,
    model: ServiceModel,
    operation: str,
    params: dict[str, Any],
    *,
    account: str,
    region: str,
) -> ClientError | None:
    """The error AWS would answer this call with (validation first, then IAM), or None."""
    service = model.service_name
    problems = check_request(model, operation, params)
    if problems:
        code, status = VALIDATION_ERROR.get(service, ("ValidationException", 400))
        return _client_error(code, validation_message(problems), status, operation)
    for action, resource, context in required_authorizations(service, operation, params, account, region):
        decision = principal.decision(action, resource, context)
        if decision != "Allow":
            code, status = ACCESS_DENIED.get(service, ("AccessDeniedException", 400))
            message = access_denied_message(principal.name, action, resource, decision)
            return _client_error(code, message, status, operation)
    return None


def install(
    monkeypatch: Any,
    *,
    principals: Callable[[], PolicyEvaluator | None] = current_principal,
    record: list[CallRecord] | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> None:
    """Patch ``BaseClient._make_api_call`` (undone by ``monkeypatch``) to check every call a principal makes."""
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def _make_api_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        principal = getattr(self, _CLIENT_PRINCIPAL, None) or principals()
        if principal is None:
            return original(self, operation_name, api_params)
        model = self.meta.service_model
        error = check_call(principal, model, operation_name, api_params, account=account, region=self.meta.region_name)
        if error is not None:
            raise self.exceptions.from_code(error.response["Error"]["Code"])(error.response, operation_name)
        if record is not None:
            record.append(CallRecord(model.service_name, operation_name, copy.deepcopy(api_params), principal.name))
        token = _PRINCIPAL.set(None)  # what moto (and the shims) do inside the call is not this principal's doing
        try:
            return original(self, operation_name, api_params)
        finally:
            _PRINCIPAL.reset(token)

    monkeypatch.setattr(BaseClient, "_make_api_call", _make_api_call)


def _pascal(api_action: str) -> str:
    return api_action[:1].upper() + api_action[1:]


def install_step_functions_error_names(monkeypatch: Any) -> None:
    """aws-sdk task errors named as Step Functions names them (replaces the harness's _normalise_* patches)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._from_error

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, ClientError):
            service = self._get_boto_service_name()
            error, cause = name_client_error(service, service_model(service), ex.response)
            return self._get_task_failure_event(env=env, error=error, cause=cause)
        return original(self, env, ex)

    monkeypatch.setattr(StateTaskServiceAwsSdk, "_from_error", _from_error)


# Step Functions' terminal errors that the States.ALL wildcard does not match (a Retry or Catch must name
# them): https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html. moto's
# wildcard matches every error.
UNCATCHABLE_BY_STATES_ALL = frozenset({"States.DataLimitExceeded", "States.Runtime"})


def install_uncatchable_errors(monkeypatch: Any) -> None:
    """``States.ALL`` in a Retry or Catch no longer matches States.DataLimitExceeded or States.Runtime."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl

    original = ErrorEqualsDecl._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        error = env.stack[-1]
        name = getattr(error, "error_name", None)
        listed = {getattr(e, "error_name", None) for e in self.error_names}
        if name in UNCATCHABLE_BY_STATES_ALL and name not in listed:
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    monkeypatch.setattr(ErrorEqualsDecl, "_eval_body", _eval_body)


def install_step_functions_principal(
    monkeypatch: Any, evaluator: PolicyEvaluator | Callable[[str], PolicyEvaluator | None]
) -> None:
    """moto's Step Functions executor acts as the state machine's role for every call its tasks make.

    ``evaluator``: the role's evaluator, or a function of the execution's role ARN returning it. Also: aws-sdk
    task parameters must use the API's exact member names (else the task fails with States.Runtime and the cause
    Step Functions gives at CreateStateMachine, ``The field "x" is not supported by Step Functions``), and
    aws-sdk errors are named per ``errors.py`` (``install_step_functions_error_names``), and ``States.ALL``
    does not catch Step Functions' terminal errors (``install_uncatchable_errors``).
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk,
        state_task_service_sns,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda

    def principal_for(env: Any) -> PolicyEvaluator | None:
        if isinstance(evaluator, PolicyEvaluator):
            return evaluator
        return evaluator(env.aws_execution_details.role_arn)

    # The task's evaluation runs in a thread moto starts (execute_state._evaluate_with_timeout); the ContextVar is
    # set inside that thread, by the wrapped _eval_execution.
    for cls in (StateTaskService, StateTaskLambda):
        original_eval = cls._eval_execution

        def _eval_execution(self: Any, env: Any, _original: Any = original_eval) -> None:
            with acting_as(principal_for(env)):
                _original(self, env)

        monkeypatch.setattr(cls, "_eval_execution", _eval_execution)

    # Clients moto builds for a task carry the principal, whichever thread later uses them.
    for module in (state_task_service_aws_sdk, state_task_service_sns, lambda_eval_utils):
        original_factory = module.boto_client_for

        def boto_client_for(*args: Any, _original: Any = original_factory, **kwargs: Any) -> Any:
            client = _original(*args, **kwargs)
            setattr(client, _CLIENT_PRINCIPAL, current_principal())
            return client

        monkeypatch.setattr(module, "boto_client_for", boto_client_for)

    original_service_task = StateTaskServiceAwsSdk._eval_service_task

    def _eval_service_task(
        self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any
    ) -> None:
        service = self._get_boto_service_name()
        problems = check_exact_member_names(
            service_model(service), _pascal(self.resource.api_action), normalised_parameters
        )
        if problems:
            raise ValueError("; ".join(problems))
        original_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials)

    monkeypatch.setattr(StateTaskServiceAwsSdk, "_eval_service_task", _eval_service_task)
    install_step_functions_error_names(monkeypatch)
    install_uncatchable_errors(monkeypatch)
