"""Pipeline: the per-model state machine, its functions, the SageMaker execution role, the outcome topic.

The stack composes constructs and wires grants; the workflow's states live in
stacks/pipeline_workflow.py, the images in stacks/sagemaker_images.py.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.endpoint_monitoring import ROLLBACK_SIGNALS
from stacks.job_images import JobImages
from stacks.log_groups import encrypted_log_group
from stacks.nag import acknowledge
from stacks.network_stack import removal_policy
from stacks.pipeline_nag import token_text
from stacks.pipeline_workflow import PipelineWorkflow
from stacks.python_function import PythonFunction, dependency_layer
from stacks.sagemaker_images import PipelineImages
from stacks.sagemaker_role import SageMakerExecutionRole, grant_pass_to_sagemaker
from stacks.variant_autoscaling_grants import grant_variant_autoscaling
from stacks.workflow_blocks import WorkflowResources


class PipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        bucket: s3.IBucket,
        key: kms.IKey,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        prefix = config.resource_prefix
        settings = config.pipeline
        policy = removal_policy(config)

        images = PipelineImages(
            self, "Images", versions=settings.images, training_instance_type=config.instances.quantize
        ).uris
        if settings.build_job_images:
            built = JobImages(
                self, "JobImages", versions=settings.images, training_instance_type=config.instances.quantize
            )
            quantize_image, evaluate_image = built.quantize.image_uri, built.evaluate.image_uri
        else:
            # The PyTorch training image these containers build FROM: a run must then
            # name its own build with quantize_image_uri/evaluate_image_uri.
            quantize_image = evaluate_image = images.training
        self.sagemaker_role = SageMakerExecutionRole(
            self,
            "SageMakerRole",
            resource_prefix=prefix,
            bucket=bucket,
            key=key,
            allowed_source_buckets=settings.allowed_source_buckets,
        ).role

        layer = dependency_layer(self, "Dependencies")
        common: dict[str, Any] = {
            "layer": layer,
            "key": key,
            "vpc": vpc,
            "subnets": subnets,
            "security_group": security_group,
            "log_retention_days": config.log_retention_days,
            "removal_policy": policy,
        }
        self.validate_function = PythonFunction(
            self,
            "ValidateInput",
            name="validate_input",
            function_name=f"{prefix}-validate-input",
            description="Validates a pipeline execution input and returns the run plan",
            environment={
                "RESOURCE_PREFIX": prefix,
                "ARTIFACT_BUCKET": bucket.bucket_name,
                "ALLOWED_BUCKETS": json.dumps(list(settings.allowed_source_buckets)),
                "MONITORED_ENDPOINTS": json.dumps(list(config.monitored_endpoints)),
                "QUANTIZE_INSTANCE_TYPE": config.instances.quantize,
                "EVALUATE_INSTANCE_TYPE": config.instances.evaluate,
                "SERVING_INSTANCE_TYPE": config.instances.serving,
                "QUANTIZE_IMAGE_URI": quantize_image,
                "EVALUATE_IMAGE_URI": evaluate_image,
                "SERVING_IMAGE_URI": images.serving,
                "KMS_KEY_ARN": key.key_arn,
                "SERVING_VARIANT": config.serving_variant,
                "MIN_BAKE_MINUTES": str(config.monitoring.min_bake_minutes),
                "ROLLBACK_SIGNALS": json.dumps(list(ROLLBACK_SIGNALS)),
            },
            **common,
        ).function
        record = PythonFunction(
            self,
            "RecordPackage",
            name="record_package",
            function_name=f"{prefix}-record-package",
            description="Verifies the quantize manifest and registers the model package",
            timeout_seconds=120,
            **common,
        )
        self.record_function = record.function
        record.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadRunOutputs", actions=["s3:GetObject"], resources=[bucket.arn_for_objects("models/*")]
            )
        )
        record.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteManifest",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects("models/*/manifest.json")],
            )
        )
        key.grant(record.role, "kms:Decrypt", "kms:GenerateDataKey")
        record.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ModelPackages",
                actions=[
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:CreateModelPackageGroup",
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:AddTags",
                ],
                resources=[
                    self.format_arn(service="sagemaker", resource="model-package-group", resource_name=f"{prefix}-*"),
                    self.format_arn(service="sagemaker", resource="model-package", resource_name=f"{prefix}-*"),
                ],
            )
        )
        record.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ListModelPackages", actions=["sagemaker:ListModelPackages"], resources=["*"])
        )
        record_policy = record.role.node.find_child("DefaultPolicy")
        bucket_text = token_text(self, bucket, bucket.bucket_arn)
        acknowledge(
            record_policy,
            f"AwsSolutions-IAM5[Resource::{bucket_text}/models/*]",
            "Reads a run's manifest under models/<model>/<run_id>/<job>/output/model/; read only.",
        )
        acknowledge(
            record_policy,
            f"AwsSolutions-IAM5[Resource::{bucket_text}/models/*/manifest.json]",
            "Writes only the manifest copy at models/<model>/<run_id>/manifest.json (docs/contracts.md).",
        )
        acknowledge(
            record_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "sagemaker:ListModelPackages has no resource-level permissions; the function lists one group's "
            "packages to find the one this run registered before (idempotent retries).",
        )
        acknowledge(
            record_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package-group/{prefix}-*]",
            "One model package group per model, created on a model's first run; scoped to the stage prefix.",
        )
        acknowledge(
            record_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package/{prefix}-*]",
            "Package versions of this stage's groups (<group>/<version>); scoped to the stage prefix.",
        )

        self.guard_function = self._guard_function(prefix, list(config.monitored_endpoints), common)

        self.topic = sns.Topic(
            self,
            "Outcomes",
            display_name=f"{prefix} model pipeline outcomes",
            master_key=key,
            enforce_ssl=True,
        )

        workflow = PipelineWorkflow(
            self,
            "Workflow",
            WorkflowResources(
                resource_prefix=prefix,
                endpoints=config.monitored_endpoints,
                bucket=bucket,
                key=key,
                sagemaker_role=self.sagemaker_role,
                subnets=vpc.select_subnets(subnet_type=subnets.subnet_type).subnets,
                security_group=security_group,
                topic=self.topic,
                guard_function=self.guard_function,
            ),
            validate_function=self.validate_function,
            record_function=self.record_function,
        )
        log_group = encrypted_log_group(
            self, "ExecutionLogs", key=key, retention_days=config.log_retention_days, removal_policy=policy
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
        self._acknowledge_state_machine_policy(prefix, list(config.monitored_endpoints), bucket)

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

    def _guard_function(self, prefix: str, endpoints: list[str], common: dict[str, Any]) -> Any:
        """Judge of the endpoint and the candidate's alarms, and the serving variant's autoscaling around a
        promotion (lambda/canary_guard)."""
        guard = PythonFunction(
            self,
            "CanaryGuard",
            name="canary_guard",
            function_name=f"{prefix}-canary-guard",
            description=(
                "Judges whether a canary may start, go on, whether an endpoint update landed; "
                "lifts and restores autoscaling around promotion"
            ),
            **common,
        )
        names = endpoints or [f"{prefix}-*"]
        endpoint_arns = [self.format_arn(service="sagemaker", resource="endpoint", resource_name=n) for n in names]
        guard.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadEndpoints",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags"],
                resources=endpoint_arns,
            )
        )
        guard.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadEndpointConfigs",
                actions=["sagemaker:DescribeEndpointConfig"],
                resources=[self.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*")],
            )
        )
        guard.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadCandidateAlarms",
                actions=["cloudwatch:DescribeAlarmHistory", "cloudwatch:DescribeAlarms"],
                resources=[
                    self.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name=f"{name}-candidate-*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for name in names
                ],
            )
        )
        # Promotion onto another instance type lifts and restores the serving variant's autoscaling.
        grant_variant_autoscaling(guard.role, endpoint_arns)
        policy = guard.role.node.find_child("DefaultPolicy")
        for name in names:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{name}-candidate-*]",
                "The candidate variant's alarms of a monitored endpoint (<endpoint>-candidate-<signal>); read only.",
            )
        if not endpoints:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint/{prefix}-*]",
                "No monitored endpoint configured: endpoints of the stage prefix.",
            )
        return guard.function

    def _acknowledge_state_machine_policy(self, prefix: str, endpoints: list[str], bucket: s3.IBucket) -> None:
        policy = self.state_machine.role.node.find_child("DefaultPolicy")
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing and CloudWatch Logs delivery of a state machine (xray:Put*, logs:*LogDelivery*) "
            "support no resource-level permissions; CDK adds exactly those.",
        )
        for function in (self.validate_function, self.record_function, self.guard_function):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{token_text(self, function, function.function_arn)}:*]",
                "lambda:InvokeFunction on this function and its versions/aliases (CDK's LambdaInvoke grant).",
            )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{token_text(self, bucket, bucket.bucket_arn)}/models/*/reports/*]",
            "Reads report.json of a run (models/<model>/<run_id>/reports/) for the gate; read only.",
        )
        sagemaker = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        scoped = {
            f"{sagemaker}:training-job/{prefix}-*": "quantize training jobs (<prefix>-<model>-<run>-q)",
            f"{sagemaker}:processing-job/{prefix}-*": "evaluate processing jobs (<prefix>-<model>-<run>-e)",
            f"{sagemaker}:model/{prefix}-*": "candidate models of this stage (<prefix>-<model>-<run>-candidate)",
            f"{sagemaker}:endpoint-config/{prefix}-*": "canary and promoted endpoint configs of this stage",
            f"{sagemaker}:model-package/{prefix}-*": "package versions in this stage's groups (approve/reject)",
            f"{sagemaker}:endpoint-config/*": (
                "the baseline endpoint's current config is read (and restored on rollback) whatever its name; "
                "the platform team names an endpoint's first config"
            ),
        }
        if not endpoints:
            scoped[f"{sagemaker}:endpoint/{prefix}-*"] = "no monitored endpoint configured: the stage prefix"
        for resource, reason in scoped.items():
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{resource}]", f"Scoped by name: {reason}.")
