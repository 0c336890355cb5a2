"""The quantize and evaluate images are built from containers/ as image assets."""

from __future__ import annotations

import json


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
        assert (staged / "jobs" / "quantize.py").is_file()


def test_validate_function_defaults_to_the_built_images(dev_app):
    template = dev_app.template_json(dev_app.stacks.pipeline)
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    env = next(f["Properties"]["Environment"]["Variables"] for f in functions if "QUANTIZE_IMAGE_URI" in str(f))
    for name in ("QUANTIZE_IMAGE_URI", "EVALUATE_IMAGE_URI"):
        assert "container-assets" in json.dumps(env[name]), env[name]
