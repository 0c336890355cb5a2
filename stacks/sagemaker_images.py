"""Official SageMaker image URIs for the pipeline, resolved offline at synth.

sagemaker-core's ``image_uris`` tables map (framework, version, region) to the
account and repository of AWS's Deep Learning Containers, so no account id is
typed here. A stack with a concrete region gets literal URIs; an
environment-agnostic stack (region unknown until deploy) gets a CfnMapping of
every region the tables list for both images, looked up with ``AWS::Region``
at deploy time (a region missing from the tables fails the deployment, not a
run hours later).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from aws_cdk import Aws, CfnMapping, Stack, Token
from constructs import Construct

from stacks.config import ImageVersions

TRAINING = "training"
SERVING = "serving"


@cache
def _tables() -> object:
    from sagemaker.core import image_uris  # type: ignore[import-untyped]  # noqa: PLC0415 - 3 s import

    return image_uris


def resolve(versions: ImageVersions, region: str, *, training_instance_type: str) -> dict[str, str]:
    """Both image URIs in ``region`` (raises ValueError when the tables lack one)."""
    image_uris = _tables()
    return {
        TRAINING: image_uris.retrieve(  # type: ignore[attr-defined]
            framework=versions.training_framework,
            region=region,
            version=versions.training_version,
            py_version=versions.training_py_version,
            instance_type=training_instance_type,
            image_scope="training",
        ),
        SERVING: image_uris.retrieve(  # type: ignore[attr-defined]
            framework=versions.serving_framework, region=region, version=versions.serving_version
        ),
    }


def supported_regions(versions: ImageVersions) -> list[str]:
    """Regions whose tables list both images at the pinned versions."""
    image_uris = _tables()
    training = image_uris.config_for_framework(versions.training_framework)  # type: ignore[attr-defined]
    serving = image_uris.config_for_framework(versions.serving_framework)  # type: ignore[attr-defined]
    training_regions = set(training[TRAINING]["versions"][versions.training_version]["registries"])
    serving_regions = set(serving["versions"][versions.serving_version]["registries"])
    return sorted(training_regions & serving_regions)


@dataclass(frozen=True)
class PipelineImageUris:
    training: str
    serving: str


class PipelineImages(Construct):
    """The default quantize/evaluate base image and serving image of this stack's region."""

    def __init__(
        self, scope: Construct, construct_id: str, *, versions: ImageVersions, training_instance_type: str
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        if not Token.is_unresolved(region):
            uris = resolve(versions, region, training_instance_type=training_instance_type)
            self.uris = PipelineImageUris(training=uris[TRAINING], serving=uris[SERVING])
            return
        mapping: dict[str, dict[str, str]] = {}
        for name in supported_regions(versions):
            try:
                uris = resolve(versions, name, training_instance_type=training_instance_type)
            except ValueError:
                continue
            mapping[name] = {"Training": uris[TRAINING], "Serving": uris[SERVING]}
        self.mapping = CfnMapping(self, "ByRegion", mapping=mapping)
        self.uris = PipelineImageUris(
            training=self.mapping.find_in_map(Aws.REGION, "Training"),
            serving=self.mapping.find_in_map(Aws.REGION, "Serving"),
        )
