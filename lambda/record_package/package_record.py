"""Verify a quantize job's manifest and register the candidate as a model package.

Pure logic over injected boto3 clients (the handler builds them; tests pass
emulated ones). Registration is idempotent: a package whose description carries
this run's marker is found and returned instead of creating a second version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from contracts.endpoint_tags import TAG_MODEL, TAG_RUN
from contracts.manifest import lookup, missing_fields

PENDING = "PendingManualApproval"
METADATA_VALUE_MAX = 256
# CreateModelPackageGroup's ModelPackageGroupName: 1-63 characters of this pattern.
PACKAGE_GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# S3 answers a GetObject on a missing key with 403 AccessDenied unless the caller may
# s3:ListBucket; this function may not, so both codes mean "no manifest we can read".
_MISSING_OR_UNREADABLE = frozenset({"NoSuchKey", "404", "AccessDenied", "403"})


class ManifestError(Exception):
    """The job's output does not meet the contract; the message lists every problem."""


class PlanError(ValueError):
    """The run plan names something SageMaker would refuse (checked before any call)."""


def check_package_group_name(name: str) -> str:
    if not PACKAGE_GROUP_NAME.fullmatch(name):
        raise PlanError(
            f"model package group name {name!r} ({len(name)} characters) is not 1-63 letters, digits and "
            "single '-' as CreateModelPackageGroup requires; the validate step must bound names.package_group"
        )
    return name


@dataclass(frozen=True)
class RecordResult:
    model_package_arn: str
    approval_status: str
    created: bool
    manifest_uri: str
    artifact_uri: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_package_arn": self.model_package_arn,
            "approval_status": self.approval_status,
            "created": self.created,
            "manifest_uri": self.manifest_uri,
            "artifact_uri": self.artifact_uri,
        }


def verify_manifest(manifest: Any, run: dict[str, Any]) -> list[str]:
    """Every way ``manifest`` breaks the contract or disagrees with the run's plan."""
    if not isinstance(manifest, dict):
        return ["manifest.json is not a JSON object"]
    problems = [f"missing {field}" for field in missing_fields(manifest)]
    for field, expected in (
        ("quantization.algorithm", run["algorithm"]),
        ("quantization.scheme", run["scheme"]),
    ):
        found, value = lookup(manifest, field)
        if found and value != expected:
            problems.append(f"{field} is {value!r}, the run asked for {expected!r}")
    found, group_size = lookup(manifest, "quantization.group_size")
    if found and run.get("group_size") is not None and group_size != run["group_size"]:
        # The job may lower the group size for a layer shape (it reports the effective one);
        # a different size for the whole model is not what was asked.
        problems.append(f"quantization.group_size is {group_size!r}, the run asked for {run['group_size']!r}")
    found, artifact_bytes = lookup(manifest, "metrics.artifact_bytes")
    if found and (not isinstance(artifact_bytes, int) or artifact_bytes <= 0):
        problems.append("metrics.artifact_bytes must be a positive integer")
    return problems


def run_marker(run_id: str) -> str:
    return f"[run_id={run_id}]"


def package_description(run: dict[str, Any]) -> str:
    return (
        f"{run['model_name']} {run['scheme']} ({run['algorithm']}, group {run.get('group_size')}) "
        f"{run_marker(run['run_id'])}"
    )


def customer_metadata(manifest: dict[str, Any], run: dict[str, Any], execution_id: str) -> dict[str, str]:
    """Searchable metadata on the package; SageMaker limits each value to 256 characters."""
    versions = manifest.get("versions", {})
    values = {
        TAG_RUN: run["run_id"],
        TAG_MODEL: run["model_name"],
        "llmq:algorithm": run["algorithm"],
        "llmq:scheme": run["scheme"],
        "llmq:group-size": str(manifest["quantization"]["group_size"]),
        "llmq:calibration-sha256": str(manifest["calibration"]["sha256"]),
        "llmq:calibration-samples": str(manifest["calibration"]["samples_used"]),
        "llmq:source-sha256": str(manifest["source"]["sha256"]),
        "llmq:wall-seconds": str(manifest["metrics"]["wall_seconds"]),
        "llmq:source-bytes": str(manifest["metrics"]["source_bytes"]),
        "llmq:artifact-bytes": str(manifest["metrics"]["artifact_bytes"]),
        "llmq:execution": execution_id,
    }
    if isinstance(versions, dict):
        values |= {f"llmq:version-{name}": str(version) for name, version in sorted(versions.items())}
    return {key: value[:METADATA_VALUE_MAX] for key, value in values.items()}


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_manifest(s3: Any, artifact_uri: str) -> Any:
    bucket, prefix = _split_s3(artifact_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read()
    except s3.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in _MISSING_OR_UNREADABLE:
            raise
        raise ManifestError(
            f"no manifest.json under {artifact_uri} ({code}): the quantize job wrote none, or this function "
            "may not read it (without s3:ListBucket S3 reports a missing key as AccessDenied)"
        ) from None
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest.json under {artifact_uri} is not JSON: {exc}") from None


def ensure_group(sm: Any, group: str, model_name: str) -> None:
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
        return
    except sm.exceptions.ClientError as exc:
        if not _is_missing(exc):
            raise
    try:
        sm.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=f"Quantized candidates of {model_name}",
        )
    except sm.exceptions.ClientError as exc:
        # Another run of the same model created it in between.
        if "already exist" not in str(exc):
            raise


def _is_missing(exc: Exception) -> bool:
    text = str(exc)
    return any(marker in text for marker in ("not found", "does not exist", "ould not find"))


def find_package(sm: Any, group: str, run_id: str) -> dict[str, Any] | None:
    """The package this run registered before, if any (matched by the run marker)."""
    marker = run_marker(run_id)
    for page in sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        for summary in page.get("ModelPackageSummaryList", []):
            described: dict[str, Any] = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            if described.get("ModelPackageDescription", "").endswith(marker):
                return described
    return None


def record(run: dict[str, Any], execution_id: str, *, s3: Any, sm: Any) -> RecordResult:
    """Verify the manifest, then find or register the run's model package (PendingManualApproval)."""
    group = check_package_group_name(run["names"]["package_group"])
    artifact_uri = run["s3"]["artifact_uri"]
    manifest = read_manifest(s3, artifact_uri)
    problems = verify_manifest(manifest, run)
    if problems:
        raise ManifestError(f"manifest.json under {artifact_uri}: " + "; ".join(problems))
    bucket = run["s3"]["bucket"]
    manifest_key = run["s3"]["manifest_key"]
    manifest_uri = f"s3://{bucket}/{manifest_key}"
    # The bucket layout keeps the manifest beside the run (docs/contracts.md); SageMaker
    # wrote it inside the job's output folder.
    s3.put_object(
        Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest, indent=1).encode(), ContentType="application/json"
    )
    ensure_group(sm, group, run["model_name"])
    existing = find_package(sm, group, run["run_id"])
    if existing is not None:
        return RecordResult(
            model_package_arn=existing["ModelPackageArn"],
            approval_status=existing["ModelApprovalStatus"],
            created=False,
            manifest_uri=manifest_uri,
            artifact_uri=artifact_uri,
        )
    created = sm.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=package_description(run),
        ModelApprovalStatus=PENDING,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": run["images"]["serving"],
                    "ModelDataSource": {
                        "S3DataSource": {"S3Uri": artifact_uri, "S3DataType": "S3Prefix", "CompressionType": "None"}
                    },
                    "Environment": run["serving_environment"],
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": [run["instances"]["serving"]],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": manifest_uri}}},
        MetadataProperties={"GeneratedBy": execution_id[:1024], "ProjectId": run["names"]["package_group"]},
        CustomerMetadataProperties=customer_metadata(manifest, run, execution_id),
    )
    return RecordResult(
        model_package_arn=created["ModelPackageArn"],
        approval_status=PENDING,
        created=True,
        manifest_uri=manifest_uri,
        artifact_uri=artifact_uri,
    )
