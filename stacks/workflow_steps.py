"""Building blocks of the pipeline's state machine: SDK calls with the right retries, lookups, bounded waits.

Error names are the ones Step Functions really reports for the AWS SDK
integrations (docs/aws-behaviour.md): a modeled error is
``<Service>.<Name>Exception``; anything the service does not model
(throttling, validation, access denied, 5xx) carries the SDK's base exception
name, e.g. ``SageMaker.AmazonSageMakerException``. SageMaker models only
ConflictException, ResourceInUse, ResourceLimitExceeded and ResourceNotFound,
so a retrier on ``SageMaker.ThrottlingException`` never matches anything.

Because the base name also covers validation errors, retries are chosen by
what is safe to repeat, not by the error: reads, weights, tags and approvals
repeat harmlessly; Create* calls retry the base name a few times (a throttled
create created nothing; a repeated one is refused as a duplicate and the
lookup that follows finds it) and ResourceLimitExceeded with a long interval.
Lookups ("does this resource exist?") do not retry at all: "not found" is
itself a ValidationException under the base name, so they catch, read the
cause and loop on throttling only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

J = sfn.JsonPath

# The SDK base exception per service, as Step Functions names unmodeled errors.
SDK_BASE_ERRORS = {
    "sagemaker": "SageMaker.AmazonSageMakerException",
    "cloudwatch": "CloudWatch.AmazonCloudWatchException",
    "s3": "S3.AmazonS3Exception",
    "applicationautoscaling": "ApplicationAutoScaling.AWSApplicationAutoScalingException",
}
# Modeled errors that mean "try again later".
MODELED_TRANSIENT = {
    "sagemaker": (),
    "cloudwatch": ("CloudWatch.InternalServiceFaultException",),
    "s3": (),
    "applicationautoscaling": (
        "ApplicationAutoScaling.ConcurrentUpdateException",
        "ApplicationAutoScaling.InternalServiceException",
    ),
}
# The optimized sns:publish integration names errors "SNS." + the Java SDK v1 exception class
# (AWS-recorded runs show SNS.NotFoundException, SNS.InvalidParameterException). Publish does
# not model throttling ("Rate exceeded" comes as the unmodeled Throttling code), so it arrives
# as the base class SNS.AmazonSNSException; the topic's KMS key can throttle too.
SNS_TRANSIENT = (
    "SNS.AmazonSNSException",
    "SNS.ThrottledException",
    "SNS.KMSThrottlingException",
    "SNS.InternalErrorException",
    "SNS.SdkClientException",
)
# Step Functions' own Lambda retry list plus throttling of the function.
LAMBDA_TRANSIENT = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
RESOURCE_LIMIT = "SageMaker.ResourceLimitExceededException"
# Causes (the SDK message) of a lookup's failure.
NOT_FOUND_PATTERNS = ("*ould not find*", "*not found*", "*does not exist*")
TRANSIENT_CAUSE_PATTERNS = (
    "*Error Code: Throttling*",
    "*Rate exceeded*",
    "*Status Code: 500*",
    "*Status Code: 503*",
)
LOOKUP_ATTEMPTS = 6
TRANSITIONAL = "wait"


def _backoff(
    task: sfn.TaskStateBase,
    errors: Sequence[str],
    *,
    interval: Duration,
    attempts: int,
    max_delay: Duration | None = None,
) -> None:
    """Exponential backoff (x2) with full jitter, so retries of many executions spread out."""
    task.add_retry(
        errors=list(errors),
        interval=interval,
        backoff_rate=2.0,
        max_attempts=attempts,
        max_delay=max_delay,
        jitter_strategy=sfn.JitterType.FULL,
    )


def retry_safe(task: sfn.TaskStateBase, service: str) -> None:
    """Reads, weights, tags, approvals: repeating them changes nothing."""
    transient = [SDK_BASE_ERRORS[service], *MODELED_TRANSIENT[service]]
    _backoff(task, transient, interval=Duration.seconds(2), attempts=5, max_delay=Duration.seconds(60))


def retry_create(task: sfn.TaskStateBase, service: str) -> None:
    """Creates: a few fast retries (throttling), then long ones while an account limit is reached."""
    if service == "sagemaker":
        _backoff(task, [RESOURCE_LIMIT], interval=Duration.minutes(5), attempts=4, max_delay=Duration.minutes(30))
    _backoff(task, [SDK_BASE_ERRORS[service], *MODELED_TRANSIENT[service]], interval=Duration.seconds(3), attempts=3)


def retry_sns(task: sfn.TaskStateBase) -> None:
    _backoff(task, SNS_TRANSIENT, interval=Duration.seconds(2), attempts=5)


def retry_lambda(task: sfn.TaskStateBase) -> None:
    _backoff(task, LAMBDA_TRANSIENT, interval=Duration.seconds(2), attempts=6)


class StepBuilder(Construct):
    """Makes states inside one construct scope; subclasses compose them into the workflow."""

    def call(
        self,
        state_id: str,
        service: str,
        action: str,
        parameters: dict[str, Any],
        *,
        resources: list[str],
        retry: str = "safe",
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
        if retry == "safe":
            retry_safe(task, service)
        elif retry == "create":
            retry_create(task, service)
        return task

    def invoke(
        self, state_id: str, function: lambda_.IFunction, payload: dict[str, Any], result_path: str
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )
        retry_lambda(task)
        return task

    def catch(self, task: sfn.TaskStateBase, handler: sfn.IChainable, path: str = "$.error") -> None:
        task.add_catch(handler, errors=[sfn.Errors.ALL], result_path=path)

    def error(self, state_id: str, error: str, cause: str, path: str = "$.error") -> sfn.Pass:
        return sfn.Pass(
            self, state_id, result=sfn.Result.from_object({"Error": error, "Cause": cause}), result_path=path
        )

    def error_from(self, state_id: str, error: str, cause_path: str, path: str = "$.error") -> sfn.Pass:
        return sfn.Pass(self, state_id, parameters={"Error": error, "Cause": J.string_at(cause_path)}, result_path=path)

    def counter(self, state_id: str, path: str) -> sfn.Pass:
        return sfn.Pass(self, state_id, parameters={"n": J.math_add(J.number_at(f"{path}.n"), 1)}, result_path=path)

    def start_counter(self, state_id: str, path: str) -> sfn.Pass:
        return sfn.Pass(self, state_id, result=sfn.Result.from_object({"n": 0}), result_path=path)

    def lookup(
        self,
        name: str,
        *,
        describe: tasks.CallAwsService,
        on_found: sfn.IChainable,
        on_not_found: sfn.IChainable,
        on_error: sfn.IChainable,
        wait_seconds_path: str,
    ) -> sfn.IChainable:
        """Describe -> found / not found (the SDK's message) / throttled: wait and ask again / else ``on_error``.

        ``describe`` must select ``{"found": true}`` and carry no retrier (see the module docstring).
        """
        lookup = f"$.lookups.{name}"
        counter = f"$.lookups.{name}_attempts"
        start = self.start_counter(f"{name} lookup start", counter)
        exists = sfn.Choice(self, f"{name} exists?")
        to_error = sfn.Pass(self, f"{name} lookup failed", input_path=lookup, result_path="$.error")
        describe.add_catch(exists, errors=[sfn.Errors.ALL], result_path=lookup)
        cause = f"{lookup}.Cause"
        matches = [sfn.Condition.string_matches(cause, p) for p in NOT_FOUND_PATTERNS]
        transient = [sfn.Condition.string_matches(cause, p) for p in TRANSIENT_CAUSE_PATTERNS]
        again = sfn.Wait(self, f"{name} lookup throttled", time=sfn.WaitTime.seconds_path(wait_seconds_path))
        exists.when(sfn.Condition.is_present(f"{lookup}.found"), on_found)
        exists.when(sfn.Condition.and_(sfn.Condition.is_present(cause), sfn.Condition.or_(*matches)), on_not_found)
        exists.when(
            sfn.Condition.and_(
                sfn.Condition.is_present(cause),
                sfn.Condition.or_(*transient),
                sfn.Condition.number_less_than(f"{counter}.n", LOOKUP_ATTEMPTS),
            ),
            again.next(self.counter(f"{name} lookup count", counter)).next(describe),
        )
        exists.otherwise(to_error.next(on_error))
        return start.next(describe).next(exists)

    def poll(
        self,
        name: str,
        *,
        describe: sfn.TaskStateBase,
        status_path: str,
        done: Sequence[str],
        failed: Sequence[str],
        max_polls_path: str,
        wait_seconds_path: str,
        on_done: sfn.IChainable,
        on_failed: sfn.IChainable,
        on_timeout: sfn.IChainable,
        on_error: sfn.IChainable,
        counter_root: str = "$.polls",
        error_path: str = "$.error",
    ) -> sfn.IChainable:
        """Describe until a done status (Describe + Wait: no ``.sync``), bounded by a poll count."""
        counter = f"{counter_root}.{name.lower().replace(' ', '_')}"
        start = self.start_counter(f"{name} start polling", counter)
        wait = sfn.Wait(self, f"{name} wait", time=sfn.WaitTime.seconds_path(wait_seconds_path))
        check = sfn.Choice(self, f"{name} status?")
        self.catch(describe, on_error, error_path)
        check.when(sfn.Condition.or_(*[sfn.Condition.string_equals(status_path, s) for s in done]), on_done)
        check.when(sfn.Condition.or_(*[sfn.Condition.string_equals(status_path, s) for s in failed]), on_failed)
        check.when(sfn.Condition.number_greater_than_equals_json_path(f"{counter}.n", max_polls_path), on_timeout)
        check.otherwise(wait.next(self.counter(f"{name} count poll", counter)).next(describe))
        start.next(describe).next(check)
        return start
