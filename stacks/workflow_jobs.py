"""Quantize and evaluate: one "run a SageMaker job and wait" fragment serving both.

``SageMakerJob`` finds or creates one SageMaker job (named by the run plan, so a
retried execution finds its job), polls it with Describe + Wait (bounded by the
plan's poll count), and on failure reads the job's own reason. ``QuantizeModel``
(a training job) and ``EvaluateModel`` (a processing job) give it their create
parameters and what follows a completed job. Fragments are plain constructs; see
stacks/pipeline_workflow.py for why.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from contracts.artifact_layout import REPORTS_PATTERN
from contracts.run_plan import run_path
from stacks.workflow_blocks import J, JobType, Later, PipelineSteps

QUANTIZE_JOB = JobType("training", "Quantize", "training-job", "TrainingJob", run_path("names.training_job"))
EVALUATE_JOB = JobType("evaluate", "Evaluate", "processing-job", "ProcessingJob", run_path("names.evaluate_job"))


class SageMakerJob(PipelineSteps):
    """Find or create one SageMaker job, then poll it until it is done (``on_done``), failed, stopped or too long.

    ``job_type`` (a ``JobType``) names its states, poll loop, errors and ARNs.

    Input: the job name at ``job_type.name_path``; whatever ``create_parameters`` read;
    ``$.run.timing.job_poll_seconds`` and ``$.run.timing.<step>_max_polls``.
    Output: ``$.lookups.<noun>_job`` (+ ``_attempts``), ``$.<step>.status``, ``$.polls.<step>``;
    on failure ``$.failed_job`` (the Describe response) and ``$.error``. Then ``on_done``.
    Errors: a failed job -> ``$.error`` = ``<Step>JobFailed`` with the job's ExitMessage or
    FailureReason; stopped -> ``<Step>JobStopped``; out of polls -> ``<Step>TimedOut`` after a
    StopJob call (its failure caught into ``$.cleanup_error``); any task error caught into
    ``$.error``; all go to ``fail``.
    """

    def build(
        self, job_type: JobType, *, create_parameters: dict[str, Any], on_done: sfn.IChainable, fail: sfn.IChainable
    ) -> sfn.IChainable:
        noun, step, api = job_type.noun, job_type.step, job_type.api
        title = noun.capitalize()
        job = {f"{api}Name": J.string_at(job_type.name_path)}
        resources = self._prefixed(job_type.kind)
        status_path = f"$.{step.lower()}.status"
        describe = self.call(
            f"Find {noun} job",
            "sagemaker",
            f"describe{api}",
            job,
            resources=resources,
            retry="none",
            result_selector={"found": True},
            result_path=f"$.lookups.{noun}_job",
        )
        create = self.call(
            f"Create {noun} job",
            "sagemaker",
            f"create{api}",
            {**job, **create_parameters},
            resources=resources,
            retry="create",
        )
        status = self.call(
            f"Describe {noun} job",
            "sagemaker",
            f"describe{api}",
            job,
            resources=resources,
            result_selector={"status": J.string_at(f"$.{api}Status")},
            result_path=f"$.{step.lower()}",
        )
        reason = self._job_failure(
            f"{title} job",
            describe=self.call(
                f"Read {noun} failure",
                "sagemaker",
                f"describe{api}",
                job,
                resources=resources,
                result_path="$.failed_job",
            ),
            error=f"{step}JobFailed",
            fail=fail,
        )
        stopped = self.error(f"{title} job stopped", f"{step}JobStopped", f"the {noun} job was stopped").next(fail)
        timed_out = self.error(f"{title} job timed out", f"{step}TimedOut", f"the {noun} job outlived its polls")
        stop = self.call(f"Stop {noun} job", "sagemaker", f"stop{api}", job, resources=resources)
        stop.add_catch(fail, errors=[sfn.Errors.ALL], result_path="$.cleanup_error")
        timed_out.next(stop).next(fail)
        failed_choice = sfn.Choice(self, f"{title} failed how?")
        failed_choice.when(sfn.Condition.string_equals(status_path, "Failed"), reason)
        failed_choice.otherwise(stopped)
        poll = self.poll(
            step,
            describe=status,
            status_path=status_path,
            done=("Completed",),
            failed=("Failed", "Stopped"),
            max_polls_path=run_path(f"timing.{step.lower()}_max_polls"),
            wait_seconds_path=run_path("timing.job_poll_seconds"),
            on_done=on_done,
            on_failed=failed_choice,
            on_timeout=timed_out,
            on_error=fail,
        )
        self.catch(create, fail)
        create.next(poll)
        return self.lookup(
            f"{noun}_job",
            describe=describe,
            on_found=poll,
            on_not_found=create,
            on_error=fail,
            wait_seconds_path=run_path("timing.job_poll_seconds"),
        )

    def _job_failure(self, name: str, *, describe: tasks.CallAwsService, error: str, fail: sfn.IChainable) -> Any:
        """Describe a failed job and fail with its reason (guarded: a missing field is a runtime error).

        A processing container's own words are ExitMessage (from /opt/ml/output/message);
        a training container's reach FailureReason (from /opt/ml/output/failure).
        """
        self.catch(describe, fail)
        with_message = self.error_from(f"{name} exit message", error, "$.failed_job.ExitMessage").next(fail)
        with_reason = self.error_from(f"{name} failure reason", error, "$.failed_job.FailureReason").next(fail)
        without = self.error(f"{name} failed without reason", error, "the job failed and SageMaker gave no reason")
        without.next(fail)
        has_reason = sfn.Choice(self, f"{name} gave a reason?")
        has_reason.when(sfn.Condition.is_present("$.failed_job.ExitMessage"), with_message)
        has_reason.when(sfn.Condition.is_present("$.failed_job.FailureReason"), with_reason)
        has_reason.otherwise(without)
        return describe.next(has_reason)


class QuantizeModel(PipelineSteps):
    """Quantize as a SageMaker training job, then read where SageMaker put the model.

    Input: ``$.run.names.training_job``, ``$.run.images.quantize``, ``$.run.hyperparameters``,
    ``$.run.s3.{source_model_uri,calibration_uri,validation_uri,output_path}``, ``$.run.resources.training``,
    ``$.run.timing.{quantize_max_seconds,quantize_max_polls,job_poll_seconds}``, ``$.run.tags``.
    Output: ``$.quantize.status``, ``$.quantize.artifacts.uri`` and ``$.run.s3.artifact_uri`` (the
    model's S3 prefix, which the record function reads); then ``then``.
    Errors: ``QuantizeJobFailed``/``QuantizeJobStopped``/``QuantizeTimedOut`` or any task error in
    ``$.error``, to ``fail``.
    """

    def build(self, *, then: sfn.IChainable, fail: sfn.IChainable) -> sfn.IChainable:
        job = {"TrainingJobName": J.string_at(run_path("names.training_job"))}
        # Where SageMaker really put the model: the record function reads the plan's URI.
        artifacts = self.call(
            "Read model artifacts",
            "sagemaker",
            "describeTrainingJob",
            job,
            resources=self._prefixed("training-job"),
            result_selector={"uri": J.string_at("$.ModelArtifacts.S3ModelArtifacts")},
            result_path="$.quantize.artifacts",
        )
        self.catch(artifacts, fail)
        artifact_uri = sfn.Pass(
            self, "Use model artifacts", input_path="$.quantize.artifacts.uri", result_path=run_path("s3.artifact_uri")
        )
        artifacts.next(artifact_uri).next(then)
        create_parameters: dict[str, Any] = {
            "RoleArn": self._role.role_arn,
            "AlgorithmSpecification": {
                "TrainingImage": J.string_at(run_path("images.quantize")),
                "TrainingInputMode": "File",
            },
            "HyperParameters": J.object_at(run_path("hyperparameters")),
            "InputDataConfig": [
                _s3_channel("model", run_path("s3.source_model_uri")),
                _s3_channel("calibration", run_path("s3.calibration_uri")),
                # Read only for the manifest's calibration fitness report (jobs/quantize/fitness.py):
                # how far the calibration set is from the set the model will be judged on.
                _s3_channel("validation", run_path("s3.validation_uri")),
            ],
            "OutputDataConfig": {
                "S3OutputPath": J.string_at(run_path("s3.output_path")),
                # Valid on every instance type (unlike a volume key).
                "KmsKeyId": self._key.key_arn,
                # Uploads the model directory as files (<output>/<job>/output/model/),
                # which the endpoint then loads without unpacking.
                "CompressionType": "NONE",
            },
            # InstanceType, count, volume size and, on EBS-only instances, the volume key.
            "ResourceConfig": J.object_at(run_path("resources.training")),
            "VpcConfig": self._vpc(),
            "StoppingCondition": {"MaxRuntimeInSeconds": J.number_at(run_path("timing.quantize_max_seconds"))},
            # The job reads its channels and writes its output through SageMaker;
            # the container itself needs no network.
            "EnableNetworkIsolation": True,
            "Tags": J.list_at(run_path("tags")),
        }
        return SageMakerJob(self, "Job", self.resources).build(
            QUANTIZE_JOB, create_parameters=create_parameters, on_done=artifacts, fail=fail
        )


class EvaluateModel(PipelineSteps):
    """Evaluate as a SageMaker processing job against the endpoint, then read and judge its bounded gate.json.

    The candidate serves on the baseline endpoint at weight 0 by now (workflow_canary.py); the job is that
    endpoint's client (both variants, by ``TargetVariant``): in the VPC without network isolation, as the
    evaluate role (stacks/evaluate_role.py). Inputs: two config.json, the manifest, the validation set.

    Input: ``$.run.names.evaluate_job``, ``$.run.images.evaluate``, ``$.run.evaluate_arguments``,
    ``$.run.s3.{baseline_config_uri,candidate_config_uri,manifest_uri,validation_uri,reports_uri,gate_key}``,
    ``$.run.resources.processing``, ``$.run.timing.{evaluate_max_seconds,evaluate_max_polls,job_poll_seconds}``,
    ``$.run.tags``.
    Output: ``$.evaluate.status``, ``$.evaluation.gate`` (gate.json); a passed gate goes to ``on_pass()`` (built when
    that branch is wired).
    Errors: ``GateFailed`` (cause: the gate's reasons), ``GateInvalid``, ``EvaluateJobFailed``/
    ``EvaluateJobStopped``/``EvaluateTimedOut`` or any task error in ``$.error``, to ``fail`` (the rollback:
    the candidate is on the endpoint by now).
    """

    def build(self, *, on_pass: Later, fail: sfn.IChainable) -> sfn.IChainable:
        # gate.json, not report.json: a task result over 256 KiB fails the state with
        # States.DataLimitExceeded, which States.ALL does not catch; the job bounds gate.json.
        read_gate = self.call(
            "Read gate",
            "s3",
            "getObject",
            {"Bucket": self._bucket.bucket_name, "Key": J.string_at(run_path("s3.gate_key"))},
            resources=[self._bucket.arn_for_objects(REPORTS_PATTERN)],
            iam_action="s3:GetObject",
            result_selector={"gate": J.string_to_json(J.string_at("$.Body"))},
            result_path="$.evaluation",
        )
        self.catch(read_gate, fail)
        passed = "$.evaluation.gate.passed"
        reasons = "$.evaluation.gate.reasons"
        gate = sfn.Choice(self, "Gate passed?")
        gate_failed = sfn.Pass(
            self,
            "Gate failed",
            parameters={"Error": "GateFailed", "Cause": J.json_to_string(J.list_at(reasons))},
            result_path="$.error",
        ).next(fail)
        gate.when(sfn.Condition.boolean_equals(passed, True), on_pass())
        gate.otherwise(gate_failed)
        gate_invalid = self.error(
            "Gate invalid", "GateInvalid", "gate.json has no boolean passed with a list reasons"
        ).next(fail)
        well_formed = sfn.Choice(self, "Gate well-formed?")
        well_formed.when(
            sfn.Condition.and_(
                sfn.Condition.is_present(passed),
                sfn.Condition.is_boolean(passed),
                sfn.Condition.is_present(reasons),
            ),
            gate,
        )
        well_formed.otherwise(gate_invalid)
        read_gate.next(well_formed)

        create_parameters: dict[str, Any] = {
            "RoleArn": self.resources.evaluate_role.role_arn,
            "AppSpecification": {
                "ImageUri": J.string_at(run_path("images.evaluate")),
                "ContainerEntrypoint": ["python3", "-m", "jobs.evaluate"],
                "ContainerArguments": J.list_at(run_path("evaluate_arguments")),
            },
            # S3Prefix inputs naming one key each (configs, manifest), and the validation prefix.
            "ProcessingInputs": [
                _processing_input("baseline", run_path("s3.baseline_config_uri")),
                _processing_input("candidate", run_path("s3.candidate_config_uri")),
                _processing_input("manifest", run_path("s3.manifest_uri")),
                _processing_input("validation", run_path("s3.validation_uri")),
            ],
            "ProcessingOutputConfig": {
                "KmsKeyId": self._key.key_arn,
                "Outputs": [
                    {
                        "OutputName": "reports",
                        "S3Output": {
                            "S3Uri": J.string_at(run_path("s3.reports_uri")),
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ],
            },
            # Instance, count, volume size and, on EBS-only instances, the volume key.
            "ProcessingResources": {"ClusterConfig": J.object_at(run_path("resources.processing"))},
            # A client of the endpoint (network calls through the VPC and its endpoints only).
            "NetworkConfig": {"EnableNetworkIsolation": False, "VpcConfig": self._vpc()},
            "StoppingCondition": {"MaxRuntimeInSeconds": J.number_at(run_path("timing.evaluate_max_seconds"))},
            "Tags": J.list_at(run_path("tags")),
        }
        return SageMakerJob(self, "Job", self.resources).build(
            EVALUATE_JOB, create_parameters=create_parameters, on_done=read_gate, fail=fail
        )


def _s3_channel(name: str, uri_path: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": J.string_at(uri_path),
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def _processing_input(name: str, uri_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": J.string_at(uri_path),
            "LocalPath": f"/opt/ml/processing/input/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
        },
    }
