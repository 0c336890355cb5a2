"""The quantize and evaluate images are built from containers/ as image assets."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stacks.job_images import BASE_IMAGE_ARG, FALLBACK_BASE_REGION, base_image_region, base_image_uri

ROOT = Path(__file__).resolve().parents[2]


def _docker_assets(dev_app) -> list[dict]:
    manifest = json.loads((dev_app.outdir / f"{dev_app.stacks.pipeline.artifact_id}.assets.json").read_text())
    return list(manifest.get("dockerImages", {}).values())


def test_both_job_images_are_built_from_their_dockerfiles_for_amd64(dev_app):
    sources = sorted(asset["source"]["dockerFile"] for asset in _docker_assets(dev_app))
    assert sources == ["containers/evaluate/Dockerfile", "containers/quantize/Dockerfile"]
    assert {asset["source"].get("platform") for asset in _docker_assets(dev_app)} == {"linux/amd64"}


def test_build_context_holds_only_job_code_and_containers(dev_app):
    for asset in _docker_assets(dev_app):
        staged = dev_app.outdir / asset["source"]["directory"]
        top = {p.name for p in staged.iterdir()}
        # .dockerignore keeps virtualenvs, node_modules and cdk.out out of the hash and the upload.
        assert top <= {"jobs", "containers", ".dockerignore"}, top
        assert (staged / "jobs" / "quantize" / "__main__.py").is_file()
        assert (staged / "jobs" / "evaluate" / "__main__.py").is_file()
        assert not (staged / "jobs" / "pilot").exists(), "the pilot is in no image"


def test_validate_function_defaults_to_the_built_images(dev_app):
    template = dev_app.template_json(dev_app.stacks.pipeline)
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    env = next(f["Properties"]["Environment"]["Variables"] for f in functions if "QUANTIZE_IMAGE_URI" in str(f))
    for name in ("QUANTIZE_IMAGE_URI", "EVALUATE_IMAGE_URI"):
        assert "container-assets" in json.dumps(env[name]), env[name]


def test_both_images_build_from_the_configs_base_image_uri(dev_app):
    """The BASE_IMAGE build argument is the PyTorch training DLC that ImageVersions names,
    resolved from sagemaker-core's tables for the region the build pulls from."""
    region = base_image_region(dev_app.stacks.pipeline.region)
    expected = base_image_uri(
        dev_app.config.pipeline.images, region, training_instance_type=dev_app.config.instances.quantize
    )
    assert expected.startswith("763104351884.dkr.ecr.") and "/pytorch-training:2.10.0-gpu-py313" in expected
    for asset in _docker_assets(dev_app):
        assert asset["source"].get("dockerBuildArgs") == {BASE_IMAGE_ARG: expected}, asset["source"]


def test_dockerfiles_build_from_the_build_argument_and_name_no_base_of_their_own():
    for name in ("quantize", "evaluate"):
        lines = (ROOT / "containers" / name / "Dockerfile").read_text().splitlines()
        instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        assert instructions[0] == "ARG BASE_IMAGE", f"{name}: the first instruction declares BASE_IMAGE, no default"
        assert [line for line in instructions if line.upper().startswith("FROM ")] == ["FROM ${BASE_IMAGE}"], name
        assert not re.search(r"dkr\.ecr\.|pytorch/pytorch:|python:\d", "\n".join(instructions)), name


def test_base_region_is_the_stacks_own_region_when_it_has_one():
    assert base_image_region("eu-west-1", {"CDK_DEFAULT_REGION": "us-west-2"}) == "eu-west-1"
    unresolved = "${Token[AWS.Region.12]}"
    assert base_image_region(unresolved, {"CDK_DEFAULT_REGION": "us-west-2"}) == "us-west-2"
    assert base_image_region(unresolved, {}) == FALLBACK_BASE_REGION
