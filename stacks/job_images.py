"""The quantize and evaluate images, built from containers/ at deploy time.

The official PyTorch training image lacks llm-compressor and the job code, so a
pipeline that defaulted to it could not run a job. As CDK image assets, `cdk
deploy` builds containers/quantize and containers/evaluate (Docker needed then,
not at synth) and pushes them to the bootstrap ECR repository; the SageMaker
role already pulls from ECR. The build context is the repository root, cut down
to jobs/ and containers/ by .dockerignore.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parents[1]


class JobImages(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.quantize = self._image("Quantize", "containers/quantize/Dockerfile")
        self.evaluate = self._image("Evaluate", "containers/evaluate/Dockerfile")

    def _image(self, construct_id: str, dockerfile: str) -> ecr_assets.DockerImageAsset:
        return ecr_assets.DockerImageAsset(
            self,
            construct_id,
            directory=str(ROOT),
            file=dockerfile,
            platform=ecr_assets.Platform.LINUX_AMD64,
            ignore_mode=IgnoreMode.DOCKER,
        )
