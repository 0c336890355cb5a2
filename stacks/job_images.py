"""The quantize and evaluate images, built from containers/ at deploy time.

The official PyTorch training image lacks llm-compressor and the job code, so a
pipeline that defaulted to it could not run a job. As CDK image assets, `cdk
deploy` builds containers/quantize and containers/evaluate (Docker needed then,
not at synth) and pushes them to the bootstrap ECR repository; the SageMaker
role already pulls from ECR. The build context is the repository root, cut down
to jobs/ and containers/ by .dockerignore.

Both Dockerfiles build ``FROM ${BASE_IMAGE}``: the PyTorch training DLC that
``ImageVersions`` (stacks/config.py) names, resolved here from sagemaker-core's
tables (stacks/sagemaker_images.py), so its URI is written nowhere else. A
Docker build argument must be a concrete string at synth (CDK refuses tokens),
so an environment-agnostic stack, whose region is unknown until deploy, pulls
the base from the region the CDK CLI resolved for this synth
(``CDK_DEFAULT_REGION``), else from ``FALLBACK_BASE_REGION``. The DLC lives in
AWS's registry account (e.g. 763104351884), so the machine that runs `cdk
deploy` must be logged in to that registry (docs/infrastructure.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from aws_cdk import IgnoreMode, Stack, Token
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from stacks.config import ImageVersions, InstanceDefaults
from stacks.sagemaker_images import TRAINING, resolve

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE_ARG = "BASE_IMAGE"
# Where an environment-agnostic synth without CDK_DEFAULT_REGION pulls the base from.
FALLBACK_BASE_REGION = "us-east-1"


def base_image_region(stack_region: str, env: dict[str, str] | None = None) -> str:
    """The region whose DLC registry the image build pulls the base from."""
    if not Token.is_unresolved(stack_region):
        return stack_region
    environ = dict(os.environ) if env is None else env
    return environ.get("CDK_DEFAULT_REGION") or FALLBACK_BASE_REGION


def base_image_uri(versions: ImageVersions, region: str, *, training_instance_type: str) -> str:
    """The PyTorch training DLC both job images build FROM (the config's base, in ``region``)."""
    return resolve(versions, region, training_instance_type=training_instance_type)[TRAINING]


class JobImages(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        versions: ImageVersions | None = None,
        training_instance_type: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Defaults are the config model's own defaults (one definition); the pipeline stack
        # should pass the stage's settings.images and instances.quantize.
        versions = versions if versions is not None else ImageVersions()
        instance_type = training_instance_type if training_instance_type is not None else InstanceDefaults().quantize
        self.base_image = base_image_uri(
            versions, base_image_region(Stack.of(self).region), training_instance_type=instance_type
        )
        self.quantize = self._image("Quantize", "containers/quantize/Dockerfile")
        self.evaluate = self._image("Evaluate", "containers/evaluate/Dockerfile")

    def _image(self, construct_id: str, dockerfile: str) -> ecr_assets.DockerImageAsset:
        return ecr_assets.DockerImageAsset(
            self,
            construct_id,
            directory=str(ROOT),
            file=dockerfile,
            build_args={BASE_IMAGE_ARG: self.base_image},
            platform=ecr_assets.Platform.LINUX_AMD64,
            ignore_mode=IgnoreMode.DOCKER,
        )
