"""The run plan derived from a valid execution input: every name, URI and limit the state machine uses.

Names derive from ``run_id``, so running the same input twice addresses the same
resources. The plan's shape is contracts/run_plan.py's ``RunPlan``; ``build_plan``
checks its own output against it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from history_budget import ENDPOINT_POLL_EVENTS, JOB_POLL_EVENTS, endpoint_waits, max_polls, poll_interval
from instance_storage import LOCAL_STORAGE_FAMILIES, has_local_storage, volume_key
from quantize_sizing import estimate
from serving_ami import inference_ami

from contracts import artifact_layout
from contracts.alarm_signals import ROLE_CANDIDATE, alarm_name
from contracts.endpoint_tags import CANDIDATE_VARIANT, TAG_MODEL, TAG_RUN
from contracts.run_plan import RunPlan
from contracts.support_table import AUTO, DEFAULT_GROUP_SIZE, GROUPED_SCHEMES

if TYPE_CHECKING:
    from run_spec import Defaults, RunSpec

SAGEMAKER_NAME_MAX = 63

# LLM containers load tens of GB of weights before /ping answers: the longest
# waits SageMaker allows (ProductionVariant: 60-3600 s each, docs/aws-behaviour.md).
CANDIDATE_STARTUP_TIMEOUT_SECONDS = 3600


CANDIDATE_DOWNLOAD_TIMEOUT_SECONDS = 3600
# The evaluate job reads the models' config.json, not their weights (it measures them where they serve).
CONFIG_FILE = "config.json"
EVALUATE_VOLUME_GB = 30
INPUT_ROOT = "/opt/ml/processing/input"


def resource_name(prefix: str, model_name: str, run_id: str, suffix: str = "") -> str:
    """``<prefix>-<model>-<run_id>[-suffix]`` within SageMaker's 63 characters (hashed when longer)."""
    tail = f"-{suffix}" if suffix else ""
    base = f"{prefix}-{model_name}-{run_id}"
    if len(base) + len(tail) <= SAGEMAKER_NAME_MAX:
        return base + tail
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    head = base[: SAGEMAKER_NAME_MAX - len(tail) - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}{tail}"


def bounded_name(name: str, limit: int = SAGEMAKER_NAME_MAX) -> str:
    """``name`` if it fits ``limit`` characters, else its head and a hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-')}-{digest}"


def _timing(spec: RunSpec) -> dict[str, Any]:
    """Poll intervals and bounds that keep the worst case under the history limit (history_budget.py)."""
    timing = spec.timing
    quantize_seconds = int(timing.quantize_max_hours * 3600)
    evaluate_seconds = int(timing.evaluate_max_hours * 3600)
    deploy_seconds = timing.deploy_max_minutes * 60
    requested = max(timing.poll_seconds, 1)
    job_poll = poll_interval(requested, quantize_seconds + evaluate_seconds, 1, JOB_POLL_EVENTS)
    endpoint_poll = poll_interval(requested, deploy_seconds, endpoint_waits(len(spec.canary)), ENDPOINT_POLL_EVENTS)
    return {
        # Wait states read these; 0 only in tests (the spec's poll_seconds: 0).
        "job_poll_seconds": job_poll if timing.poll_seconds else 0,
        "endpoint_poll_seconds": endpoint_poll if timing.poll_seconds else 0,
        "quantize_max_seconds": quantize_seconds,
        "evaluate_max_seconds": evaluate_seconds,
        # The Describe/Wait loops give up a little after the job's own limit.
        "quantize_max_polls": max_polls(quantize_seconds, job_poll) + 10,
        "evaluate_max_polls": max_polls(evaluate_seconds, job_poll) + 10,
        "deploy_max_polls": max_polls(deploy_seconds, endpoint_poll),
    }


def _variants(spec: RunSpec, defaults: Defaults, model: str, image: str) -> dict[str, Any]:
    """The candidate's production variant (canary: "candidate"; promoted: the serving variant's name)."""
    instance_type = spec.serving_instance_type or defaults.serving_instance_type
    candidate: dict[str, Any] = {
        "VariantName": CANDIDATE_VARIANT,
        "ModelName": model,
        "InstanceType": instance_type,
        "InitialInstanceCount": spec.serving_instance_count,
        "ContainerStartupHealthCheckTimeoutInSeconds": CANDIDATE_STARTUP_TIMEOUT_SECONDS,
        "ModelDataDownloadTimeoutInSeconds": CANDIDATE_DOWNLOAD_TIMEOUT_SECONDS,
    }
    ami = inference_ami(image, instance_type)
    if ami:
        candidate["InferenceAmiVersion"] = ami
    promoted = {**candidate, "VariantName": defaults.serving_variant, "InitialVariantWeight": 1}
    return {"serving_name": defaults.serving_variant, "candidate": candidate, "promoted": promoted}


def _evaluate_arguments(spec: RunSpec, defaults: Defaults, serving_instance: str) -> list[str]:
    """The evaluate job's flags (the job's parser is the other side: tests/jobs/evaluate/test_pipeline_contract.py).

    Both variants are served by the baseline endpoint: the serving variant with all user traffic and the
    candidate at weight 0, each reached with InvokeEndpoint's TargetVariant. The job loads the two
    configs and the manifest, measures fidelity and speed live, and gates on the thresholds below.
    """
    gate = spec.gate
    return [
        "--baseline-dir",
        f"{INPUT_ROOT}/baseline",
        "--candidate-dir",
        f"{INPUT_ROOT}/candidate",
        "--manifest-dir",
        f"{INPUT_ROOT}/manifest",
        "--validation",
        f"{INPUT_ROOT}/validation",
        "--output-dir",
        "/opt/ml/processing/output",
        "--failure-dir",
        "/opt/ml/output",
        "--baseline-endpoint",
        spec.baseline_endpoint,
        "--baseline-variant",
        defaults.serving_variant,
        "--candidate-endpoint",
        spec.baseline_endpoint,
        "--candidate-variant",
        CANDIDATE_VARIANT,
        "--region",
        defaults.region,
        "--serving-protocol",
        "lmi",
        "--measured-instance-type",
        serving_instance,
        "--max-ppl-increase-pct",
        str(gate.max_perplexity_increase_pct),
        "--max-p95-latency-ratio",
        str(round(1 + gate.max_p95_latency_increase_pct / 100, 4)),
        "--min-throughput-ratio",
        str(gate.min_throughput_ratio),
    ]


def build_plan(spec: RunSpec, run_id: str, defaults: Defaults) -> dict[str, Any]:
    """Everything the state machine needs, precomputed (names, URIs, images, weights, limits).

    Checked against the typed plan (contracts/run_plan.py) that the state machine's JSONPaths
    are spelt from, so a field cannot be missing on one side only.
    """
    plan = _plan(spec, run_id, defaults)
    return RunPlan.model_validate(plan).model_dump(mode="json")


def _recipe_hyperparameters(spec: RunSpec) -> dict[str, str]:
    """The algorithm given, or recipe auto and its budget (the quantize job's names)."""
    if spec.recipe == AUTO:
        return {"recipe": AUTO, "search-budget-seconds": str(spec.search_budget_minutes * 60)}
    return {"algorithm": str(spec.algorithm)}


def _plan(spec: RunSpec, run_id: str, defaults: Defaults) -> dict[str, Any]:
    prefix = defaults.resource_prefix
    bucket = defaults.artifact_bucket
    name = spec.model_name
    run_key = artifact_layout.run_key(name, run_id)
    training_job = resource_name(prefix, name, run_id, "q")
    artifact_uri = f"s3://{bucket}/{artifact_layout.model_output_key(name, run_id, training_job)}"
    candidate_model = resource_name(prefix, name, run_id, "candidate")
    group_size = spec.group_size or (DEFAULT_GROUP_SIZE if spec.scheme in GROUPED_SCHEMES else None)
    hyperparameters = {
        **_recipe_hyperparameters(spec),
        "scheme": spec.scheme,
        "num-calibration-samples": str(spec.num_calibration_samples),
        "max-seq-length": str(spec.max_seq_length),
        "seed": str(spec.seed),
        "ignore": ",".join(spec.ignore),
    }
    if group_size is not None:
        hyperparameters["group-size"] = str(group_size)
    images = {
        "quantize": spec.quantize_image_uri or defaults.quantize_image_uri,
        "evaluate": spec.evaluate_image_uri or defaults.evaluate_image_uri,
        "serving": spec.serving_image_uri or defaults.serving_image_uri,
    }
    variants = _variants(spec, defaults, candidate_model, images["serving"])
    steps = [
        {
            "candidate": step.weight,
            "baseline": 100 - step.weight,
            "bake_seconds": step.bake_minutes * 60,
            "index": index + 1,
        }
        for index, step in enumerate(spec.canary)
    ]
    first = steps[0]
    quantize_instance = spec.quantize_instance_type or defaults.quantize_instance_type
    evaluate_instance = spec.evaluate_instance_type or defaults.evaluate_instance_type
    serving_instance = spec.serving_instance_type or defaults.serving_instance_type
    key = defaults.kms_key_arn
    # The source, the staged artifact and room for the container (quantize_sizing.py).
    quantize_volume_gb = max(
        50,
        estimate(
            spec.model_parameters_billion,
            spec.sizing_algorithm,
            samples=spec.num_calibration_samples,
            max_seq_length=spec.max_seq_length,
        ).disk_gib,
    )
    alarm_prefix = f"{spec.baseline_endpoint}-{ROLE_CANDIDATE}-"
    return {
        "model_name": name,
        "run_id": run_id,
        # With recipe auto the manifest names the algorithm "auto" too (the search records the winner).
        "algorithm": spec.algorithm or AUTO,
        "scheme": spec.scheme,
        "group_size": group_size,
        "baseline_endpoint": spec.baseline_endpoint,
        "names": {
            "training_job": training_job,
            "evaluate_job": resource_name(prefix, name, run_id, "e"),
            "candidate_model": candidate_model,
            "endpoint_config": resource_name(prefix, name, run_id),
            "promoted_config": resource_name(prefix, name, run_id, "promoted"),
            "package_group": bounded_name(f"{prefix}-{name}"),
            "alarm_prefix": alarm_prefix,
            # Read one by one over each bake (DescribeAlarmHistory takes one name).
            "candidate_alarms": [
                alarm_name(spec.baseline_endpoint, ROLE_CANDIDATE, signal) for signal in defaults.rollback_signals
            ],
            "scalable_target": f"endpoint/{spec.baseline_endpoint}/variant/{defaults.serving_variant}",
        },
        "s3": {
            "bucket": bucket,
            "run_prefix": f"s3://{bucket}/{run_key}",
            "output_path": f"s3://{bucket}/{run_key}",
            # Where SageMaker puts an uncompressed model directory (<output>/<job>/output/model/);
            # the state machine replaces it with the job's ModelArtifacts.S3ModelArtifacts.
            "artifact_uri": artifact_uri,
            "manifest_key": artifact_layout.manifest_key(name, run_id),
            "reports_uri": f"s3://{bucket}/{artifact_layout.reports_key(name, run_id)}",
            "report_key": artifact_layout.report_key(name, run_id),
            # The bounded verdict the state machine reads.
            "gate_key": artifact_layout.report_key(name, run_id, artifact_layout.GATE_FILE),
            # The serving variant's scaling setup while a promotion has it lifted.
            "autoscaling_key": artifact_layout.autoscaling_record_key(
                name, run_id, spec.baseline_endpoint, defaults.serving_variant
            ),
            "capture_uri": f"s3://{bucket}/{artifact_layout.capture_key(name, run_id)}",
            "source_model_uri": spec.source_model_uri,
            "calibration_uri": spec.calibration_uri,
            "validation_uri": spec.validation_uri,
            # The evaluate job's inputs (S3Prefix inputs naming one key each): configs, not weights.
            "baseline_config_uri": f"{spec.source_model_uri}{CONFIG_FILE}",
            "candidate_config_uri": f"{artifact_uri}{CONFIG_FILE}",
            "manifest_uri": f"s3://{bucket}/{artifact_layout.manifest_key(name, run_id)}",
        },
        "images": images,
        "instances": {
            "quantize": quantize_instance,
            "evaluate": evaluate_instance,
            "serving": serving_instance,
            "serving_count": spec.serving_instance_count,
            "quantize_volume_gb": quantize_volume_gb,
            # The baseline variant's instance type is known only at run time: the state
            # machine looks its family up here before it adds the KMS key to a config.
            "local_storage_families": sorted(LOCAL_STORAGE_FAMILIES),
            "serving_local_storage": has_local_storage(serving_instance),
        },
        # ResourceConfig / ClusterConfig as the APIs take them: a volume key only where
        # the instance has no NVMe instance storage (instance_storage.py).
        "resources": {
            "training": {
                "InstanceType": quantize_instance,
                "InstanceCount": 1,
                "VolumeSizeInGB": quantize_volume_gb,
                **volume_key(quantize_instance, key),
            },
            # The evaluate job is a client of the endpoint: configs, a validation set, reports.
            "processing": {
                "InstanceType": evaluate_instance,
                "InstanceCount": 1,
                "VolumeSizeInGB": EVALUATE_VOLUME_GB,
                **volume_key(evaluate_instance, key),
            },
        },
        "variants": variants,
        "hyperparameters": hyperparameters,
        # LMI (vLLM engine) reads the compressed-tensors config from the model directory.
        "serving_environment": {
            "HF_MODEL_ID": "/opt/ml/model",
            "OPTION_ROLLING_BATCH": "vllm",
            "OPTION_TENSOR_PARALLEL_DEGREE": "max",
            "OPTION_MAX_MODEL_LEN": str(spec.max_seq_length),
        },
        "evaluate_arguments": _evaluate_arguments(spec, defaults, serving_instance),
        "canary": {
            "first": first,
            # The canary config: the serving variant copied whole (its weight kept) and the
            # candidate at weight 0, evaluated there before any user sees it; the bake's first
            # step then sets the first weights.
            "candidate_at_zero": {**variants["candidate"], "InitialVariantWeight": 0},
            "steps": steps,
        },
        "timing": _timing(spec),
        "require_human_review": defaults.require_human_review,
        "tags": [
            {"Key": TAG_MODEL, "Value": name},
            {"Key": TAG_RUN, "Value": run_id},
        ],
    }
