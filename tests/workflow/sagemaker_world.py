"""SageMaker as its documentation describes it, on top of moto's backend (test code only).

moto completes every job at once, never puts an endpoint in Updating, has no
UpdateEndpoint, and accepts a volume KMS key on NVMe instances. Each rule below
is a row of docs/aws-behaviour.md with its AWS source:

- jobs: InProgress for ``job_polls`` Describe calls, then Completed, or Failed
  with the FailureReason (a processing job: with the container's ExitMessage too);
  uncompressed output is reported in
  ModelArtifacts.S3ModelArtifacts as the ``.../output/model/`` prefix;
- a volume KMS key (training, processing, endpoint config) on an instance type
  with NVMe instance storage is refused (ValidationException);
- UpdateEndpoint and UpdateEndpointWeightsAndCapacities put the endpoint in
  Updating for ``update_polls`` DescribeEndpoint calls; a mutation meanwhile is
  refused with "Cannot update in-progress endpoint";
- a failed UpdateEndpoint (injected per config name) returns the endpoint to
  InService on the OLD config with FailureReason set;
- an UpdateEndpoint that removes a variant registered with Application Auto
  Scaling, or changes its instance type, fails;
- a variant's weight comes from the new config, 0 included (moto drops a 0);
- RetainAllVariantProperties keeps the instance counts of variants of the same
  name; ExcludeRetainedVariantProperties takes weights from the new config;
- the endpoint's data capture always comes from the config it is updated to (DescribeEndpoint's
  DataCaptureConfig summary); DataCaptureConfig in ExcludeRetainedVariantProperties is refused
  ("not currently supported");
- instances bill per second whatever their variant's weight: the meter adds
  instance-seconds per variant as the virtual clock advances.
"""

from __future__ import annotations

import copy
import inspect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from moto.applicationautoscaling.models import ApplicationAutoscalingBackend, applicationautoscaling_backends
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

ACCOUNT = "123456789012"
REGION = "us-east-1"
# Instance families with NVMe instance store: ml.g4dn, ml.g5, ml.p4d are named in the
# ResourceConfig/ProcessingClusterConfig API references; the others carry instance store
# per the EC2 instance-store table that the SageMaker storage page links to.
NVME_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5", "c5d", "m5d", "r5d"})
TRANSITIONAL = ("Creating", "Updating", "SystemUpdating", "RollingBack")


def validation_error(message: str) -> JsonRESTError:
    return JsonRESTError("ValidationException", message)


def family(instance_type: str) -> str:
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 else ""


@dataclass
class Timeline:
    """Virtual time (advanced by Wait states) and the instance-seconds each variant billed."""

    now: float = 0.0
    instance_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    running: dict[str, int] = field(default_factory=dict)

    def advance(self, seconds: float) -> None:
        for variant, count in self.running.items():
            self.instance_seconds[variant] += count * seconds
        self.now += seconds


@dataclass
class WorldFaults:
    job_polls: int = 2
    # Per kind, when a scenario needs a job to take longer (the history-size worst case).
    training_polls: int | None = None
    processing_polls: int | None = None
    update_polls: int = 2
    # config name -> FailureReason of an UpdateEndpoint to it (the candidate does not start).
    failing_configs: dict[str, str] = field(default_factory=dict)
    training_failure: str | None = None
    # The evaluate container's failure message (its ExitMessage).
    processing_failure: str | None = None


class SageMakerWorld:
    """Installs the documented behaviour on moto's SageMaker backend (undone by pytest's monkeypatch)."""

    def __init__(self, monkeypatch: Any, faults: WorldFaults, timeline: Timeline) -> None:
        self.faults = faults
        self.timeline = timeline
        world = self
        backend_cls = SageMakerModelBackend

        def wrap(name: str, before: Any = None, after: Any = None) -> None:
            original = getattr(backend_cls, name)
            signature = inspect.signature(original)

            def method(backend: Any, *args: Any, **kwargs: Any) -> Any:
                # moto's responses pass some arguments by position: hooks see them all by name.
                named = dict(signature.bind(backend, *args, **kwargs).arguments)
                named.pop("self", None)
                if before:
                    before(backend, named)
                result = original(backend, *args, **kwargs)
                if after:
                    after(backend, named, result)
                return result

            monkeypatch.setattr(backend_cls, name, method)

        wrap("create_training_job", before=self._check_training, after=self._start_training)
        wrap("create_processing_job", after=self._start_processing)
        wrap("create_endpoint_config", before=self._check_endpoint_config)
        # moto's backend never sees ProcessingResources: check it on the request.
        original_processing = SageMakerResponse.create_processing_job

        def create_processing_job(response: Any) -> Any:
            world._check_processing(response._get_param("ProcessingResources") or {})
            return original_processing(response)

        monkeypatch.setattr(SageMakerResponse, "create_processing_job", create_processing_job)
        wrap("describe_training_job", before=self._step_training)
        wrap("describe_processing_job", before=self._step_processing)
        wrap("describe_endpoint", before=self._step_endpoint)
        monkeypatch.setattr(backend_cls, "update_endpoint", _update_endpoint, raising=False)
        monkeypatch.setattr(backend_cls, "update_endpoint_weights_and_capacities", _update_weights)
        monkeypatch.setattr(backend_cls, "_world", world, raising=False)
        monkeypatch.setattr(
            ApplicationAutoscalingBackend, "deregister_scalable_target", _deregister_with_policies, raising=True
        )

    # ----- jobs

    def _check_training(self, backend: Any, kwargs: dict[str, Any]) -> None:
        resources = kwargs["resource_config"]
        if resources.get("VolumeKmsKeyId") and family(resources["InstanceType"]) in NVME_FAMILIES:
            raise validation_error(
                f"Volume KMS key is not supported for instance type {resources['InstanceType']}: it has local "
                "instance storage, encrypted by a hardware module on the instance."
            )

    def _start_training(self, backend: Any, kwargs: dict[str, Any], result: Any) -> None:
        job = backend.training_jobs[kwargs["training_job_name"]]
        job.training_job_status = "InProgress"
        job._polls_left = self.faults.training_polls or self.faults.job_polls
        output = kwargs["output_data_config"]
        if output.get("CompressionType") == "NONE":
            base = output["S3OutputPath"].rstrip("/")
            job.model_artifacts = {"S3ModelArtifacts": f"{base}/{job.training_job_name}/output/model/"}

    def _step_training(self, backend: Any, kwargs: dict[str, Any]) -> None:
        job = backend.training_jobs.get(kwargs.get("training_job_name") or "")
        if not _last_poll(job, "training_job_status"):
            return
        if self.faults.training_failure:
            job.training_job_status = "Failed"
            job.failure_reason = self.faults.training_failure
        else:
            job.training_job_status = "Completed"

    def _check_processing(self, resources: dict[str, Any]) -> None:
        cluster = resources.get("ClusterConfig", {})
        if cluster.get("VolumeKmsKeyId") and family(cluster["InstanceType"]) in NVME_FAMILIES:
            raise validation_error(f"Volume KMS key is not supported for instance type {cluster['InstanceType']}.")

    def _start_processing(self, backend: Any, kwargs: dict[str, Any], result: Any) -> None:
        job = backend.processing_jobs[kwargs["processing_job_name"]]
        job.processing_job_status = "InProgress"
        job._polls_left = self.faults.processing_polls or self.faults.job_polls

    def _step_processing(self, backend: Any, kwargs: dict[str, Any]) -> None:
        job = backend.processing_jobs.get(kwargs.get("processing_job_name") or "")
        if _last_poll(job, "processing_job_status"):
            failure = getattr(job, "_failure", None) or self.faults.processing_failure
            job.processing_job_status = "Failed" if failure else "Completed"
            if failure:
                job.exit_message, job.failure_reason = failure, "AlgorithmError: See job logs for more information"

    # ----- endpoints

    def _check_endpoint_config(self, backend: Any, kwargs: dict[str, Any]) -> None:
        if not kwargs.get("kms_key_id"):
            return
        local = [
            v["InstanceType"]
            for v in kwargs["production_variants"]
            if family(v.get("InstanceType", "")) in NVME_FAMILIES
        ]
        if local:
            raise validation_error(
                f"KmsKeyId is not supported for instance types with local storage: {', '.join(local)}."
            )

    def set_updating(self, endpoint: Any, polls: int) -> None:
        """The endpoint is busy (autoscaling, a team's own update) for ``polls`` describes."""
        endpoint.endpoint_status = "Updating"
        endpoint._pending = {"kind": "none", "polls": polls}

    def _step_endpoint(self, backend: Any, kwargs: dict[str, Any]) -> None:
        endpoint = backend.endpoints.get(kwargs.get("endpoint_name") or "")
        pending = getattr(endpoint, "_pending", None)
        if endpoint is None or pending is None:
            return
        pending["polls"] -= 1
        if pending["polls"] > 0:
            return
        endpoint._pending = None
        endpoint.endpoint_status = "InService"
        if pending["kind"] == "weights":
            for variant in endpoint.production_variants:
                if variant["VariantName"] in pending["weights"]:
                    variant["CurrentWeight"] = variant["DesiredWeight"] = pending["weights"][variant["VariantName"]]
        elif pending["kind"] == "config":
            if pending.get("failure"):
                endpoint.failure_reason = pending["failure"]
            else:
                endpoint.failure_reason = None
                endpoint.endpoint_config_name = pending["config"]
                endpoint.production_variants = pending["variants"]
                endpoint.data_capture_config = pending["capture"]
        self.meter(backend)

    def meter(self, backend: Any) -> None:
        """What bills from now on: every running instance of every variant, whatever its weight."""
        running: dict[str, int] = {}
        for endpoint in backend.endpoints.values():
            for variant in endpoint.production_variants:
                key = f"{endpoint.endpoint_name}/{variant['VariantName']}"
                running[key] = int(variant.get("CurrentInstanceCount") or 0)
        self.timeline.running = running


def _last_poll(job: Any, status_field: str) -> bool:
    """Count one describe of a job still InProgress; True on the one its polls run out at (it ends now)."""
    if job is None or getattr(job, status_field) != "InProgress":
        return False
    job._polls_left -= 1
    return job._polls_left <= 0


def _refuse_in_progress(endpoint: Any) -> None:
    if endpoint.endpoint_status != "InService":
        raise validation_error(f'Cannot update in-progress endpoint "{endpoint.arn}".')


_ORIGINAL_DEREGISTER = ApplicationAutoscalingBackend.deregister_scalable_target


def _deregister_with_policies(backend: Any, namespace: str, r_id: str, dimension: str) -> None:
    """Deregistering a target deletes its scaling policies and scheduled actions (moto keeps them).

    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeregisterScalableTarget.html
    """
    _ORIGINAL_DEREGISTER(backend, namespace, r_id, dimension)
    backend.policies = {
        key: policy
        for key, policy in backend.policies.items()
        if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) != (namespace, r_id, dimension)
    }
    backend.scheduled_actions = [
        action
        for action in backend.scheduled_actions
        if (action.service_namespace, action.resource_id, action.scalable_dimension) != (namespace, r_id, dimension)
    ]


def _scaled_variants(endpoint_name: str) -> set[str]:
    backend = applicationautoscaling_backends[ACCOUNT][REGION]
    targets = backend.targets.get("sagemaker:variant:DesiredInstanceCount", {})
    prefix = f"endpoint/{endpoint_name}/variant/"
    return {rid.removeprefix(prefix) for rid in targets if rid.startswith(prefix)}


def capture_summary(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """DescribeEndpoint's DataCaptureConfig (DataCaptureConfigSummary) of a config's DataCaptureConfig."""
    if not config:
        return None
    enabled = bool(config.get("EnableCapture", True))
    return {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": config["InitialSamplingPercentage"],
        "DestinationS3Uri": config["DestinationS3Uri"],
        "KmsKeyId": config.get("KmsKeyId", ""),
    }


def _variants_of(backend: Any, config_name: str) -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in backend.endpoint_configs[config_name].production_variants}


def _update_endpoint(
    backend: Any,
    endpoint_name: str,
    endpoint_config_name: str,
    retain_all_variant_properties: bool = False,
    exclude_retained_variant_properties: list[dict[str, str]] | None = None,
) -> str:
    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        raise validation_error(f"Could not find endpoint '{endpoint_name}'.")
    if endpoint_config_name not in backend.endpoint_configs:
        raise validation_error(f"Could not find endpoint configuration '{endpoint_config_name}'.")
    _refuse_in_progress(endpoint)
    old = _variants_of(backend, endpoint.endpoint_config_name)
    new = _variants_of(backend, endpoint_config_name)
    for name in _scaled_variants(endpoint_name):
        if name in old and (name not in new or new[name].get("InstanceType") != old[name].get("InstanceType")):
            raise validation_error(
                f"The variant {name} is registered with Application Auto Scaling; deregister it before an update "
                "that removes it or changes its instance type."
            )
    variants = endpoint._process_production_variants(copy.deepcopy(list(new.values())))
    for variant in variants:  # moto drops a weight of 0 (ProductionVariant: minimum 0, default 1.0)
        variant["CurrentWeight"] = variant["DesiredWeight"] = new[variant["VariantName"]].get(
            "InitialVariantWeight", 1.0
        )
    excluded = {p["VariantPropertyType"] for p in exclude_retained_variant_properties or []}
    if "DataCaptureConfig" in excluded:
        raise validation_error("VariantPropertyType DataCaptureConfig is not currently supported.")
    if retain_all_variant_properties:
        current = {v["VariantName"]: v for v in endpoint.production_variants}
        for variant in variants:
            kept = current.get(variant["VariantName"])
            if not kept:
                continue
            if "DesiredInstanceCount" not in excluded:
                variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = kept.get("CurrentInstanceCount")
            if "DesiredWeight" not in excluded:
                variant["CurrentWeight"] = variant["DesiredWeight"] = kept.get("CurrentWeight")
    world: SageMakerWorld = backend._world
    endpoint.endpoint_status = "Updating"
    endpoint._pending = {
        "kind": "config",
        "config": endpoint_config_name,
        "variants": variants,
        "capture": capture_summary(backend.endpoint_configs[endpoint_config_name].data_capture_config),
        "polls": world.faults.update_polls,
        "failure": world.faults.failing_configs.get(endpoint_config_name),
    }
    return str(endpoint.arn)


def _update_weights(backend: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]) -> str:
    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        raise validation_error(f'Could not find endpoint "{endpoint_name}".')
    _refuse_in_progress(endpoint)
    names = {v["VariantName"] for v in endpoint.production_variants}
    weights = {}
    for desired in desired_weights_and_capacities:
        if desired["VariantName"] not in names:
            raise validation_error(
                f'The variant name(s) "{desired["VariantName"]}" is/are not present within endpoint configuration '
                f'"{endpoint.endpoint_config_name}".'
            )
        if "DesiredWeight" in desired:
            weights[desired["VariantName"]] = float(desired["DesiredWeight"])
    world: SageMakerWorld = backend._world
    endpoint.endpoint_status = "Updating"
    endpoint._pending = {"kind": "weights", "weights": weights, "polls": world.faults.update_polls}
    return str(endpoint.arn)
