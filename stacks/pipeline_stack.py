"""Pipeline: the per-model state machine, its functions, the SageMaker execution role, the outcome topic.

The stack composes constructs and wires grants: each function is its own construct
(stacks/validate_function.py, stacks/record_function.py, stacks/canary_guard_function.py),
the workflow's states live in stacks/pipeline_workflow.py (composed from the fragments in
stacks/workflow_*.py), the images in stacks/sagemaker_images.py, the state machine role's
cdk-nag acknowledgments in stacks/pipeline_nag.py.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.canary_guard_function import CanaryGuardFunction
from stacks.evaluate_role import EvaluateJobRole
from stacks.job_images import JobImages
from stacks.log_groups import encrypted_log_group
from stacks.pipeline_nag import acknowledge_state_machine_policy
from stacks.pipeline_workflow import PipelineWorkflow
from stacks.python_function import dependency_layer
from stacks.record_function import RecordPackageFunction
from stacks.sagemaker_images import PipelineImages
from stacks.sagemaker_role import SageMakerExecutionRole, grant_pass_to_sagemaker, repository_arn_of_image
from stacks.shared_resources import SharedResources
from stacks.topics import encrypted_topic
from stacks.validate_function import ValidateInputFunction
from stacks.workflow_blocks import WorkflowResources


class PipelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, shared: SharedResources, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = shared.config
        prefix = shared.prefix
        settings = config.pipeline
        key = shared.key

        images = PipelineImages(
            self, "Images", versions=settings.images, training_instance_type=config.instances.quantize
        ).uris
        if settings.build_job_images:
            built = JobImages(
                self, "JobImages", versions=settings.images, training_instance_type=config.instances.quantize
            )
            quantize_image, evaluate_image = built.quantize.image_uri, built.evaluate.image_uri
            evaluate_repository = built.evaluate.repository.repository_arn
        else:
            # The PyTorch training image these containers build FROM: a run must then
            # name its own build with quantize_image_uri/evaluate_image_uri.
            quantize_image = evaluate_image = images.training
            evaluate_repository = repository_arn_of_image(images.training)
        self.sagemaker_role = SageMakerExecutionRole(
            self,
            "SageMakerRole",
            resource_prefix=prefix,
            bucket=shared.bucket,
            key=key,
            allowed_source_buckets=settings.allowed_source_buckets,
        ).role
        # The evaluate job is a client of the canaried endpoint: its own, narrower role.
        self.evaluate_role = EvaluateJobRole(
            self,
            "EvaluateRole",
            resource_prefix=prefix,
            endpoints=config.monitored_endpoints,
            bucket=shared.bucket,
            key=key,
            image_repositories=[evaluate_repository],
            allowed_source_buckets=settings.allowed_source_buckets,
        ).role

        shared = shared.with_layer(dependency_layer(self, "Dependencies"))
        self.validate_function = ValidateInputFunction(
            self,
            "ValidateInput",
            shared,
            quantize_image=quantize_image,
            evaluate_image=evaluate_image,
            serving_image=images.serving,
        ).function
        self.record_function = RecordPackageFunction(self, "RecordPackage", shared).function
        self.guard_function = CanaryGuardFunction(self, "CanaryGuard", shared).function

        self.topic = encrypted_topic(self, "Outcomes", key=key, display_name=f"{prefix} model pipeline outcomes")

        workflow = PipelineWorkflow(
            self,
            "Workflow",
            WorkflowResources(
                shared=shared,
                sagemaker_role=self.sagemaker_role,
                evaluate_role=self.evaluate_role,
                topic=self.topic,
                guard_function=self.guard_function,
            ),
            validate_function=self.validate_function,
            record_function=self.record_function,
        )
        log_group = encrypted_log_group(
            self,
            "ExecutionLogs",
            key=key,
            retention_days=config.log_retention_days,
            removal_policy=shared.removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=f"{prefix}-model-pipeline",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(workflow.start),
            timeout=Duration.hours(settings.execution_timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        role = self.state_machine.role
        grant_pass_to_sagemaker(self.sagemaker_role, role)
        grant_pass_to_sagemaker(self.evaluate_role, role)
        # Decrypt: the report object (SSE-KMS); GenerateDataKey: publishing to the encrypted
        # topic; CreateGrant/DescribeKey: jobs and endpoint configs with the KMS key.
        key.grant(role, "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey")
        # Creating jobs, models and configs with tags needs AddTags on each of them.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TagCreatedResources",
                actions=["sagemaker:AddTags"],
                resources=[
                    self.format_arn(service="sagemaker", resource=kind, resource_name=f"{prefix}-*")
                    for kind in ("training-job", "processing-job", "model", "endpoint-config")
                ],
            )
        )
        acknowledge_state_machine_policy(
            role.node.find_child("DefaultPolicy"),
            prefix=prefix,
            endpoints=list(config.monitored_endpoints),
            bucket=shared.bucket,
            functions=(self.validate_function, self.record_function, self.guard_function),
        )

        failed = cloudwatch.MathExpression(
            expression="failed + timedout + aborted",
            using_metrics={
                "failed": self.state_machine.metric_failed(period=Duration.minutes(5), statistic="Sum"),
                "timedout": self.state_machine.metric_timed_out(period=Duration.minutes(5), statistic="Sum"),
                "aborted": self.state_machine.metric_aborted(period=Duration.minutes(5), statistic="Sum"),
            },
            label="failed, timed-out or aborted executions",
            period=Duration.minutes(5),
        )
        self.failure_alarm = cloudwatch.Alarm(
            self,
            "ExecutionsFailedAlarm",
            alarm_name=f"{prefix}-model-pipeline-failed",
            alarm_description="A model pipeline execution failed, timed out or was aborted",
            metric=failed,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.failure_alarm.add_alarm_action(cw_actions.SnsAction(self.topic))

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "OutcomeTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "SageMakerRoleArn", value=self.sagemaker_role.role_arn)
        CfnOutput(self, "EvaluateRoleArn", value=self.evaluate_role.role_arn)
