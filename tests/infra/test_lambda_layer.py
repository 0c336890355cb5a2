"""The dependency layer is built for the Lambda platform, and the functions run on the newest Python runtime."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from stacks import lambda_layer
from stacks.python_function import RUNTIME

REQUIREMENTS = dict(
    line.split("==", 1)
    for line in (raw.split("#", 1)[0].strip() for raw in lambda_layer.REQUIREMENTS.read_text().splitlines())
    if line
)


def _lifecycle() -> dict[str, dict[str, str | None]]:
    import cfnlint

    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "LmbdRuntimeLifecycle.json"
    data: dict[str, dict[str, str | None]] = json.loads(path.read_text())
    return data


def test_functions_run_on_the_newest_python_runtime_which_the_layer_targets(dev_app):
    lifecycle = _lifecycle()
    assert lifecycle["python3.11"]["deprecated"] == "2027-06-30"
    newest = max((name for name in lifecycle if name.startswith("python3.")), key=lambda n: int(n.split(".")[1]))
    assert RUNTIME.name == newest == f"python{lambda_layer.PYTHON_VERSION}"
    assert lifecycle[newest]["successor"] is None
    for stack in dev_app.all_stacks():
        template = dev_app.template_json(stack)
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function" and "Layers" in resource["Properties"]:
                assert resource["Properties"]["Runtime"] == RUNTIME.name
                assert resource["Properties"]["Architectures"] == ["x86_64"]
            if resource["Type"] == "AWS::Lambda::LayerVersion":
                assert resource["Properties"]["CompatibleRuntimes"] == [RUNTIME.name]
                assert resource["Properties"]["CompatibleArchitectures"] == ["x86_64"]


def test_layer_holds_the_pinned_distributions_built_for_the_lambda_platform():
    site = lambda_layer.layer_dir() / "python"
    for name, version in REQUIREMENTS.items():
        assert (site / f"{name.replace('-', '_')}-{version}.dist-info").is_dir(), name
    extensions = list(site.rglob("*.so"))
    assert extensions  # pydantic-core at least
    tag = f"cpython-{lambda_layer.PYTHON_VERSION.replace('.', '')}-x86_64-linux-gnu"
    assert [e.name for e in extensions if tag not in e.name] == []
    for wheel in site.glob("*.dist-info/WHEEL"):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
        assert any(t.endswith("-any") or "manylinux" in t for t in tags), (wheel, tags)


def test_layer_botocore_has_the_s3_conditional_write_parameters_the_rollback_function_uses():
    model_dir = lambda_layer.layer_dir() / "python" / "botocore" / "data" / "s3" / "2006-03-01"
    path = model_dir / "service-2.json.gz"
    model = (
        json.loads(gzip.decompress(path.read_bytes()))
        if path.exists()
        else json.loads((model_dir / "service-2.json").read_text())
    )
    members = model["shapes"]["PutObjectRequest"]["members"]
    assert members["IfNoneMatch"]["location"] == "header"
    assert members["IfMatch"]["location"] == "header"
    rollback = (lambda_layer.ROOT / "lambda" / "rollback" / "rollback_lock.py").read_text()
    assert 'IfNoneMatch="*"' in rollback and "IfMatch=" in rollback


def test_synth_without_a_built_layer_stops_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(lambda_layer, "BUILD_DIR", tmp_path / "lambda-layer")
    with pytest.raises(lambda_layer.LayerNotBuiltError, match=r"run `make setup`"):
        lambda_layer.layer_dir()


def test_layer_folder_follows_the_requirements(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic==2.14.4\n")
    monkeypatch.setattr(lambda_layer, "REQUIREMENTS", requirements)
    first = lambda_layer._digest()
    requirements.write_text("pydantic==2.14.3\n")
    assert lambda_layer._digest() != first
