"""Compose every stack of one stage into an App; app.py and the tests share this."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.config import StageConfig
from stacks.monitoring_stack import MonitoringStack
from stacks.network_stack import NetworkStack
from stacks.pipeline_stack import PipelineStack
from stacks.shared_resources import SharedResources
from stacks.storage_stack import StorageStack


@dataclass(frozen=True)
class ProjectStacks:
    storage: StorageStack
    network: NetworkStack
    monitoring: MonitoringStack
    pipeline: PipelineStack


def build_stacks(app: App, config: StageConfig, *, nag: bool = True) -> ProjectStacks:
    """Add the project's stacks for ``config`` to ``app``.

    cdk-nag's AwsSolutions pack runs over the whole app at synth; an
    unacknowledged finding makes ``app.synth()`` fail.
    """
    env = Environment(account=config.account, region=config.region) if config.account or config.region else None
    prefix = config.resource_prefix
    storage = StorageStack(app, f"{prefix}-storage", config=config, env=env)
    network = NetworkStack(app, f"{prefix}-network", config=config, key=storage.key, env=env)
    shared = SharedResources(
        config=config,
        bucket=storage.artifact_bucket,
        key=storage.key,
        vpc=network.vpc,
        subnets=network.workload_subnets,
        security_group=network.security_group,
    )
    monitoring = MonitoringStack(app, f"{prefix}-monitoring", shared=shared, env=env)
    pipeline = PipelineStack(app, f"{prefix}-pipeline", shared=shared, env=env)
    Tags.of(app).add("project", config.project)
    Tags.of(app).add("stage", config.stage)
    for name, value in sorted(config.tags.items()):
        Tags.of(app).add(name, value)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return ProjectStacks(storage=storage, network=network, monitoring=monitoring, pipeline=pipeline)
