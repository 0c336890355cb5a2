"""IAM as AWS evaluates it for one role's identity-based policies, and what each call this project makes needs.

- ``policies_of_role``: the statements of a role in the synthesized templates (its inline ``Policies`` and every
  ``AWS::IAM::Policy`` whose ``Roles`` names it), intrinsics resolved by the workflow harness's TemplateResolver.
- ``PolicyEvaluator``: explicit Deny wins, then any Allow, else implicit deny. Action/NotAction (case-insensitive),
  Resource/NotResource (case-sensitive), ``*``/``?`` wildcards, and the Condition operators listed in
  ``CONDITION_OPERATORS``; any other operator raises (a policy the evaluator cannot judge must not pass).
- ``required_authorizations``: (action, resource ARN, request context) per call, each resource type as the
  Service Authorization Reference documents it; a call without a rule raises ``NoAuthorizationRuleError``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Statement = dict[str, Any]
Authorization = tuple[str, str, dict[str, Any]]


class NoAuthorizationRuleError(LookupError):
    """A call the harness does not know how to authorize: add its rule (with its SAR source) to RULES."""


class UnsupportedPolicyFeatureError(ValueError):
    """A policy uses a condition operator (or element) the evaluator does not implement."""


# ----- statements of a role


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _names_role(resolver: Any, stack: str, roles: list[Any], role_logical_id: str, role_name: str) -> bool:
    for ref in roles:
        if isinstance(ref, dict) and ref.get("Ref") == role_logical_id:
            return True
        if resolver.resolve(stack, ref) == role_name:
            return True
    return False


def policies_of_role(resolved_templates: Any, stack: str, role_logical_id: str) -> list[Statement]:
    """Every statement granted to ``role_logical_id`` of ``stack``, intrinsics resolved.

    ``resolved_templates`` is the harness's ``tests.workflow.harness.TemplateResolver`` (or a dict of templates,
    which is wrapped in one). Policies in other stacks that name the role (by name) count too.
    """
    from tests.workflow.harness import TemplateResolver

    resolver = (
        resolved_templates if isinstance(resolved_templates, TemplateResolver) else TemplateResolver(resolved_templates)
    )
    role = resolver.templates[stack]["Resources"][role_logical_id]
    if role["Type"] != "AWS::IAM::Role":
        raise ValueError(f"{role_logical_id} in {stack} is a {role['Type']}, not an AWS::IAM::Role")
    role_name = resolver.resolve(stack, {"Ref": role_logical_id})
    statements: list[Statement] = []
    for inline in role.get("Properties", {}).get("Policies", []):
        statements += _as_list(resolver.resolve(stack, inline["PolicyDocument"]).get("Statement"))
    for other_stack in resolver.templates:
        for resource in resolver.resources_of_type(other_stack, "AWS::IAM::Policy").values():
            props = resource.get("Properties", {})
            roles = _as_list(props.get("Roles"))
            local_ref = other_stack == stack
            if _names_role(resolver, other_stack, roles, role_logical_id if local_ref else "", role_name):
                statements += _as_list(resolver.resolve(other_stack, props["PolicyDocument"]).get("Statement"))
    return statements


# ----- evaluation


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _matches_any(patterns: Iterable[str], value: str, *, ignore_case: bool) -> bool:
    return any(_wildcard(p, ignore_case=ignore_case).fullmatch(value) for p in patterns)


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: each of the six colon-separated parts matched on its own, with wildcards."""
    p_parts = pattern.split(":", 5)
    v_parts = value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(_wildcard(p, ignore_case=False).fullmatch(v) for p, v in zip(p_parts, v_parts, strict=True))


def _string_values(value: Any) -> list[str]:
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(value)]


_SINGLE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda p, v: p == v,
    "StringNotEquals": lambda p, v: p == v,  # negated below
    "StringLike": lambda p, v: bool(_wildcard(p, ignore_case=False).fullmatch(v)),
    "ArnLike": _arn_like,
    "ArnEquals": _arn_like,
    "Bool": lambda p, v: p.lower() == v.lower(),
}
_NEGATED = {"StringNotEquals"}
CONDITION_OPERATORS = frozenset(
    {*_SINGLE, "ForAnyValue:StringEquals", "ForAllValues:StringEquals", "ForAnyValue:StringLike"}
)


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    if operator.endswith("IfExists"):
        raise UnsupportedPolicyFeatureError(f"condition operator {operator} is not implemented")
    wanted = _string_values(expected)
    present = key in context
    actual = _string_values(context.get(key))
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        qualifier, base = operator.split(":", 1)
        if f"{qualifier}:{base}" not in CONDITION_OPERATORS:
            raise UnsupportedPolicyFeatureError(f"condition operator {operator} is not implemented")
        test = _SINGLE[base]
        if qualifier == "ForAnyValue":
            return any(test(p, v) for v in actual for p in wanted)
        return all(any(test(p, v) for p in wanted) for v in actual)  # vacuously true without the key
    if operator not in _SINGLE:
        raise UnsupportedPolicyFeatureError(f"condition operator {operator} is not implemented")
    test = _SINGLE[operator]
    if operator in _NEGATED:
        return not present or not any(test(p, v) for v in actual for p in wanted)
    if not present:
        return False
    return any(test(p, v) for v in actual for p in wanted)


@dataclass
class PolicyEvaluator:
    """Identity-based policy evaluation for one principal (no SCPs, boundaries, sessions or resource policies)."""

    statements: list[Statement]
    name: str = "principal"  # shown in AccessDenied messages: the role ARN or assumed-role ARN

    def __post_init__(self) -> None:
        for statement in self.statements:
            for operator in statement.get("Condition", {}):
                if operator not in CONDITION_OPERATORS:
                    raise UnsupportedPolicyFeatureError(f"condition operator {operator} is not implemented")

    @staticmethod
    def _element_matches(statement: Statement, positive: str, negative: str, value: str, *, ignore_case: bool) -> bool:
        if positive in statement:
            return _matches_any(_as_list(statement[positive]), value, ignore_case=ignore_case)
        if negative in statement:
            return not _matches_any(_as_list(statement[negative]), value, ignore_case=ignore_case)
        raise UnsupportedPolicyFeatureError(f"a statement without {positive} or {negative}")

    @classmethod
    def _applies(cls, statement: Statement, action: str, resource: str, context: Mapping[str, Any]) -> bool:
        if not cls._element_matches(statement, "Action", "NotAction", action, ignore_case=True):
            return False
        if not cls._element_matches(statement, "Resource", "NotResource", resource, ignore_case=False):
            return False
        return all(
            _condition_holds(operator, key, expected, context)
            for operator, keys in statement.get("Condition", {}).items()
            for key, expected in keys.items()
        )

    def decision(self, action: str, resource_arn: str, context: Mapping[str, Any] | None = None) -> str:
        """'Allow', 'ExplicitDeny' or 'ImplicitDeny'."""
        ctx = context or {}
        applying = [s for s in self.statements if self._applies(s, action, resource_arn, ctx)]
        if any(s.get("Effect") == "Deny" for s in applying):
            return "ExplicitDeny"
        if any(s.get("Effect") == "Allow" for s in applying):
            return "Allow"
        return "ImplicitDeny"

    def is_allowed(self, action: str, resource_arn: str, context: Mapping[str, Any] | None = None) -> bool:
        return self.decision(action, resource_arn, context) == "Allow"


def access_denied_message(principal: str, action: str, resource: str, decision: str) -> str:
    """The AccessDeniedException message IAM-enforcing services return (the 2021+ wording with the reason)."""
    if decision == "ExplicitDeny":
        reason = "with an explicit deny in an identity-based policy"
    else:
        reason = f"because no identity-based policy allows the {action} action"
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource} {reason}"


# ----- what each call needs (Service Authorization Reference)

SAR = "https://docs.aws.amazon.com/service-authorization/latest/reference/"
SAGEMAKER_PASSED_TO = "sagemaker.amazonaws.com"


def _sm(kind: str, name_key: str) -> Callable[[dict[str, Any], str, str], str]:
    def arn(params: dict[str, Any], account: str, region: str) -> str:
        name = str(params[name_key])
        if name.startswith("arn:"):
            return name
        # SageMaker lower-cases resource names in ARNs (DescribeTrainingJob returns the ARN lower-cased).
        return f"arn:aws:sagemaker:{region}:{account}:{kind}/{name.lower()}"

    return arn


def _model_package(params: dict[str, Any], account: str, region: str) -> str:
    # DescribeModelPackage names it ModelPackageName; UpdateModelPackage, ModelPackageArn.
    name = str(params.get("ModelPackageName") or params["ModelPackageArn"])
    return name if name.startswith("arn:") else f"arn:aws:sagemaker:{region}:{account}:model-package/{name.lower()}"


def _new_model_package(params: dict[str, Any], account: str, region: str) -> str:
    group = params.get("ModelPackageGroupName")
    if group:  # a versioned package: model-package/<group>/<version>; the version is not known yet
        group = str(group).rsplit("/", 1)[-1] if str(group).startswith("arn:") else str(group)
        return f"arn:aws:sagemaker:{region}:{account}:model-package/{group.lower()}/*"
    return f"arn:aws:sagemaker:{region}:{account}:model-package/{str(params['ModelPackageName']).lower()}"


@dataclass(frozen=True)
class Rule:
    action: str
    resources: tuple[Callable[[dict[str, Any], str, str], str], ...]
    source: str
    context: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def _condition(key: str, parameter: str, absent: Any = None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The condition key ``key`` a call sets: the value of its request's ``parameter`` (``absent`` if left out)."""
    return lambda params: {key: params.get(parameter, absent)}


def _star(params: dict[str, Any], account: str, region: str) -> str:
    return "*"


def _resource_arn(params: dict[str, Any], account: str, region: str) -> str:
    return str(params["ResourceArn"])


def _s3_object(params: dict[str, Any], account: str, region: str) -> str:
    return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"


def _s3_bucket(params: dict[str, Any], account: str, region: str) -> str:
    return f"arn:aws:s3:::{params['Bucket']}"


def _alarm(params: dict[str, Any], account: str, region: str) -> str:
    return f"arn:aws:cloudwatch:{region}:{account}:alarm:{params['AlarmName']}"


def _scalable_target(params: dict[str, Any], account: str, region: str) -> str:
    # The real id is service-generated (not derivable from the request); a stable stand-in per target.
    opaque = hashlib.sha256(f"{params['ServiceNamespace']}/{params['ResourceId']}".encode()).hexdigest()[:32]
    return f"arn:aws:application-autoscaling:{region}:{account}:scalable-target/{opaque}"


def _scalable_target_context(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "application-autoscaling:service-namespace": params.get("ServiceNamespace"),
        "application-autoscaling:scalable-dimension": params.get("ScalableDimension"),
    }


def _scaled_endpoint(params: dict[str, Any], account: str, region: str) -> str:
    # ResourceId endpoint/<name>/variant/<variant>
    name = str(params["ResourceId"]).split("/")[1]
    return f"arn:aws:sagemaker:{region}:{account}:endpoint/{name.lower()}"


def _nameless_alarm_probe(params: dict[str, Any], account: str, region: str) -> str:
    # Application Auto Scaling's probes name no alarm (DescribeAlarms with only MaxRecords,
    # PutMetricAlarm and DeleteAlarms without parameters): authorized as on every alarm.
    return f"arn:aws:cloudwatch:{region}:{account}:alarm:*"


def _alarms(params: dict[str, Any], account: str, region: str) -> str:
    names = params.get("AlarmNames") or []
    if len(names) == 1:
        return f"arn:aws:cloudwatch:{region}:{account}:alarm:{names[0]}"
    prefix = params.get("AlarmNamePrefix")
    # IAM authorizes DescribeAlarms once, on the alarm ARN pattern the request can return.
    return f"arn:aws:cloudwatch:{region}:{account}:alarm:{prefix or ''}*"


def _topic(params: dict[str, Any], account: str, region: str) -> str:
    return str(params.get("TopicArn") or params.get("TargetArn"))


def _function(params: dict[str, Any], account: str, region: str) -> str:
    name = str(params["FunctionName"])
    if name.startswith("arn:"):
        return name
    if ":" in name:  # name:qualifier
        return f"arn:aws:lambda:{region}:{account}:function:{name}"
    qualifier = params.get("Qualifier")
    return f"arn:aws:lambda:{region}:{account}:function:{name}" + (f":{qualifier}" if qualifier else "")


_SM = SAR + "list_amazonsagemaker.html"
_CW = SAR + "list_amazoncloudwatch.html"
_S3 = SAR + "list_amazons3.html"
_SNS = SAR + "list_amazonsns.html"
_LAMBDA = SAR + "list_awslambda.html"
_AAS = SAR + "list_applicationautoscaling.html"


def _named(kind: str, name_key: str, *operations: str) -> dict[tuple[str, str], Rule]:
    """SageMaker calls authorized on the one resource of ``kind`` their request names in ``name_key``."""
    return {("sagemaker", op): Rule(f"sagemaker:{op}", (_sm(kind, name_key),), _SM) for op in operations}


RULES: dict[tuple[str, str], Rule] = {
    **_named("training-job", "TrainingJobName", "DescribeTrainingJob", "CreateTrainingJob", "StopTrainingJob"),
    **_named(
        "processing-job", "ProcessingJobName", "DescribeProcessingJob", "CreateProcessingJob", "StopProcessingJob"
    ),
    **_named("model", "ModelName", "DescribeModel", "CreateModel", "DeleteModel"),
    **_named(
        "endpoint-config",
        "EndpointConfigName",
        "DescribeEndpointConfig",
        "CreateEndpointConfig",
        "DeleteEndpointConfig",
    ),
    **_named("endpoint", "EndpointName", "DescribeEndpoint", "UpdateEndpointWeightsAndCapacities"),
    ("sagemaker", "UpdateEndpoint"): Rule(
        "sagemaker:UpdateEndpoint",
        (_sm("endpoint", "EndpointName"), _sm("endpoint-config", "EndpointConfigName")),
        _SM + " (UpdateEndpoint: endpoint* and endpoint-config*)",
    ),
    ("sagemaker", "AddTags"): Rule("sagemaker:AddTags", (_resource_arn,), _SM),
    # SageMaker Runtime: the action is sagemaker:InvokeEndpoint on the endpoint (API_runtime_InvokeEndpoint).
    ("sagemaker-runtime", "InvokeEndpoint"): Rule("sagemaker:InvokeEndpoint", (_sm("endpoint", "EndpointName"),), _SM),
    # Its API reference asks for sagemaker:InvokeEndpoint, the SAR lists its own action: both (ALSO_REQUIRED).
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream"): Rule(
        "sagemaker:InvokeEndpointWithResponseStream", (_sm("endpoint", "EndpointName"),), _SM
    ),
    ("sagemaker", "ListTags"): Rule("sagemaker:ListTags", (_resource_arn,), _SM),
    **_named("model-package-group", "ModelPackageGroupName", "CreateModelPackageGroup", "DescribeModelPackageGroup"),
    ("sagemaker", "CreateModelPackage"): Rule("sagemaker:CreateModelPackage", (_new_model_package,), _SM),
    ("sagemaker", "DescribeModelPackage"): Rule("sagemaker:DescribeModelPackage", (_model_package,), _SM),
    ("sagemaker", "UpdateModelPackage"): Rule("sagemaker:UpdateModelPackage", (_model_package,), _SM),
    ("sagemaker", "ListModelPackages"): Rule(
        "sagemaker:ListModelPackages", (_star,), _SM + " (list action; this project grants it on *)"
    ),
    ("cloudwatch", "DescribeAlarms"): Rule("cloudwatch:DescribeAlarms", (_alarms,), _CW + " (DescribeAlarms: alarm*)"),
    ("cloudwatch", "DescribeAlarmHistory"): Rule("cloudwatch:DescribeAlarmHistory", (_alarm,), _CW),
    ("cloudwatch", "PutMetricData"): Rule(
        "cloudwatch:PutMetricData",
        (_star,),
        _CW + " (no resource type; condition key cloudwatch:namespace)",
        _condition("cloudwatch:namespace", "Namespace"),
    ),
    ("s3", "GetObject"): Rule("s3:GetObject", (_s3_object,), _S3),
    ("s3", "HeadObject"): Rule("s3:GetObject", (_s3_object,), _S3 + " (HeadObject is authorized as s3:GetObject)"),
    ("s3", "PutObject"): Rule("s3:PutObject", (_s3_object,), _S3),
    ("s3", "ListObjectsV2"): Rule(
        "s3:ListBucket",
        (_s3_bucket,),
        _S3 + " (ListObjectsV2 is authorized as s3:ListBucket on the bucket; condition key s3:prefix)",
        _condition("s3:prefix", "Prefix", ""),
    ),
    ("sns", "Publish"): Rule("sns:Publish", (_topic,), _SNS),
    ("lambda", "Invoke"): Rule("lambda:InvokeFunction", (_function,), _LAMBDA + " (Invoke is lambda:InvokeFunction)"),
    **{
        ("application-autoscaling", op): Rule(f"application-autoscaling:{op}", (_star,), _AAS + " (no resource type)")
        for op in (
            "DescribeScalableTargets",
            "DescribeScalingPolicies",
            "DescribeScalingActivities",
            "DescribeScheduledActions",
        )
    },
    **{
        ("application-autoscaling", op): Rule(
            f"application-autoscaling:{op}",
            (_scalable_target,),
            _AAS + " (ScalableTarget*; condition keys service-namespace, scalable-dimension)",
            _scalable_target_context,
        )
        for op in (
            "RegisterScalableTarget",
            "DeregisterScalableTarget",
            "PutScalingPolicy",
            "DeleteScalingPolicy",
            "PutScheduledAction",
            "DeleteScheduledAction",
        )
    },
}

# Application Auto Scaling checks that the caller itself may use the target service and CloudWatch
# before it registers a target or creates a policy, and fails the call otherwise
# (https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_permission_validation.html;
# SageMaker's list: https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html).
# Which calls run the check is not documented beyond RegisterScalableTarget; PutScalingPolicy
# creates target tracking's alarms, so both are checked here.
_SAGEMAKER_SCALING_CHECKS: tuple[tuple[str, Callable[[dict[str, Any], str, str], str]], ...] = (
    ("sagemaker:DescribeEndpoint", _scaled_endpoint),
    ("sagemaker:DescribeEndpointConfig", lambda p, a, r: f"arn:aws:sagemaker:{r}:{a}:endpoint-config/*"),
    ("sagemaker:UpdateEndpointWeightsAndCapacities", _scaled_endpoint),
    ("cloudwatch:PutMetricAlarm", _nameless_alarm_probe),
    ("cloudwatch:DescribeAlarms", _nameless_alarm_probe),
    ("cloudwatch:DeleteAlarms", _nameless_alarm_probe),
)
VALIDATED_CALLER_PERMISSIONS: dict[tuple[str, str], tuple[tuple[str, Any], ...]] = {
    ("application-autoscaling", "RegisterScalableTarget"): _SAGEMAKER_SCALING_CHECKS,
    ("application-autoscaling", "PutScalingPolicy"): _SAGEMAKER_SCALING_CHECKS,
}

# CreateTrainingJob RoleArn, CreateProcessingJob RoleArn, CreateModel ExecutionRoleArn: passing a role needs
# iam:PassRole on it (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html),
# with iam:PassedToService = sagemaker.amazonaws.com (Step Functions' generated SageMaker policies use it).
PASSED_ROLES: dict[tuple[str, str], str] = {
    ("sagemaker", "CreateTrainingJob"): "RoleArn",
    ("sagemaker", "CreateProcessingJob"): "RoleArn",
    ("sagemaker", "CreateModel"): "ExecutionRoleArn",
}
# SageMaker Create* with Tags also needs sagemaker:AddTags on the new resource (SAR: CreateTrainingJob etc. list
# sagemaker:AddTags as a dependent action when tags are given).
# Actions a call needs beyond its rule's, on the same resource (the documentation names more than one).
ALSO_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream"): ("sagemaker:InvokeEndpoint",),
}
TAGGED_CREATES = frozenset(op for (service, op) in RULES if service == "sagemaker" and op.startswith("Create"))


def required_authorizations(
    service: str, operation: str, params: dict[str, Any], account: str, region: str
) -> list[Authorization]:
    """Every (action, resource ARN, request context) IAM must allow for this call; raises NoAuthorizationRuleError."""
    rule = RULES.get((service, operation))
    if rule is None:
        raise NoAuthorizationRuleError(f"no authorization rule for {service}:{operation}")
    context = rule.context(params) if rule.context else {}
    needed: list[Authorization] = [(rule.action, arn(params, account, region), dict(context)) for arn in rule.resources]
    needed += [(action, needed[0][1], {}) for action in ALSO_REQUIRED.get((service, operation), ())]
    passed = PASSED_ROLES.get((service, operation))
    if passed and params.get(passed):
        needed.append(("iam:PassRole", str(params[passed]), {"iam:PassedToService": SAGEMAKER_PASSED_TO}))
    if operation in TAGGED_CREATES and params.get("Tags"):
        needed.append(("sagemaker:AddTags", needed[0][1], {}))
    if params.get("ServiceNamespace") == "sagemaker":
        for action, resource in VALIDATED_CALLER_PERMISSIONS.get((service, operation), ()):
            needed.append((action, resource(params, account, region), {}))
    return needed
