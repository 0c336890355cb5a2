"""How Step Functions names and describes an error an ``aws-sdk`` task's call returned.

AWS (Step Functions developer guide, "AWS SDK service integrations"): the Error is ``ServiceName.ErrorName``,
both in Pascal case, with an ``Exception`` suffix added where the service's own name lacks it
(``S3.BucketAlreadyExistsException``). An error the service does not model (throttling, validation, access
denied, 5xx) surfaces as the SDK's base service exception: AWS's own SageMaker sample retries
``SageMaker.AmazonSageMakerException`` and the Lambda best-practice page retries ``Lambda.AWSLambdaException``,
the AWS SDK for Java v1 base exception names (AmazonSageMakerException, AWSLambdaException). The Cause is the
Java SDK's exception message: ``<message> (Service: <id>; Status Code: <n>; Error Code: <code>;
Request ID: <id>; Proxy: null)``.

"Modeled" is decided from the botocore service model: an ``exception: true`` shape whose error code (or name)
is the returned code. The Java SDK unmarshals any of the client's modeled exceptions, whichever operation
returned it, so the whole service's exceptions count unless an operation is named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.model import ServiceModel


@dataclass(frozen=True)
class ServiceNaming:
    pascal: str  # the ServiceName part of the Error
    base_exception: str  # AWS SDK for Java v1 base service exception (errors the service does not model)
    service_id: str  # "Service:" in the Cause (Java v1 service name)
    source: str  # where the names come from, or why they are what they are


SERVICE_NAMING: dict[str, ServiceNaming] = {
    "sagemaker": ServiceNaming(
        "SageMaker",
        "AmazonSageMakerException",
        "AmazonSageMaker",
        "https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html (sample Retry on "
        "SageMaker.AmazonSageMakerException and SageMaker.ResourceLimitExceededException)",
    ),
    "lambda": ServiceNaming(
        "Lambda",
        "AWSLambdaException",
        "AWSLambda",
        "https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html "
        "(Lambda.AWSLambdaException, Lambda.ServiceException)",
    ),
    "s3": ServiceNaming(
        "S3",
        "AmazonS3Exception",
        "Amazon S3",
        "Pascal name: https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html "
        "(S3.BucketAlreadyExistsException); base name: Java SDK v1 class com.amazonaws.services.s3.model."
        "AmazonS3Exception (not seen in a Step Functions page)",
    ),
    "cloudwatch": ServiceNaming(
        "CloudWatch",
        "AmazonCloudWatchException",
        "AmazonCloudWatch",
        "Java SDK v1 naming (AmazonCloudWatchException), by analogy with the documented SageMaker/Lambda names; "
        "not seen in a Step Functions page",
    ),
    "sns": ServiceNaming(
        "Sns",
        "AmazonSNSException",
        "AmazonSNS",
        "Java SDK v1 base name AmazonSNSException; Pascal name 'Sns' as the Java SDK v2 client prefix, like the "
        "documented AcmPca and moto's DynamoDb/Sfn bindings; neither seen in a Step Functions page",
    ),
    "application-autoscaling": ServiceNaming(
        "ApplicationAutoScaling",
        "AWSApplicationAutoScalingException",
        "AWSApplicationAutoScaling",
        "Java SDK v1 naming (AWSApplicationAutoScalingException); not seen in a Step Functions page",
    ),
}


def naming(service_name: str) -> ServiceNaming:
    try:
        return SERVICE_NAMING[service_name.lower()]
    except KeyError:
        raise KeyError(
            f"no Step Functions error naming for service {service_name!r}: add it to SERVICE_NAMING"
        ) from None


def with_exception_suffix(name: str) -> str:
    return name if name.endswith("Exception") else f"{name}Exception"


def modeled_exception(service_model: ServiceModel, error_code: str, operation_name: str | None = None) -> str | None:
    """The modeled exception shape's name for ``error_code`` (None: the service does not model it)."""
    if operation_name is None:
        shapes = [service_model.shape_for(name) for name in service_model.shape_names]
        shapes = [shape for shape in shapes if shape.metadata.get("exception")]
    else:
        shapes = list(service_model.operation_model(operation_name).error_shapes)
    for shape in shapes:
        code = shape.metadata.get("error", {}).get("code", shape.name)
        if error_code in {code, shape.name}:
            return shape.name
    return None


def step_functions_error(service_name: str, error_code: str, modeled: bool) -> str:
    """The Error Step Functions reports: ``SageMaker.ResourceNotFoundException`` for a modeled error,
    ``SageMaker.AmazonSageMakerException`` for one the service does not model (``error_code`` is then ignored)."""
    service = naming(service_name)
    if not modeled:
        return f"{service.pascal}.{service.base_exception}"
    pascal = error_code[:1].upper() + error_code[1:]
    return f"{service.pascal}.{with_exception_suffix(pascal)}"


def step_functions_cause(message: str, service_id: str, status_code: int, error_code: str, request_id: str) -> str:
    """The Cause Step Functions reports for an SDK error (the AWS SDK for Java exception message)."""
    return (
        f"{message} (Service: {service_id}; Status Code: {status_code}; Error Code: {error_code}; "
        f"Request ID: {request_id}; Proxy: null)"
    )


def name_client_error(service_name: str, service_model: ServiceModel, response: Mapping[str, Any]) -> tuple[str, str]:
    """(Error, Cause) for a botocore ClientError response from ``service_name``."""
    error = response.get("Error", {})
    meta = response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "Unknown")
    shape = modeled_exception(service_model, code)
    name = step_functions_error(service_name, shape or code, modeled=shape is not None)
    cause = step_functions_cause(
        str(error.get("Message", "")),
        naming(service_name).service_id,
        int(meta.get("HTTPStatusCode", 400)),
        code,
        str(meta.get("RequestId", "")),
    )
    return name, cause
