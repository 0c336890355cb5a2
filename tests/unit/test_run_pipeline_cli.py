"""stacks/run_pipeline.py: the spec is judged locally before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks import run_pipeline

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples").glob("*"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_documented_example_validates_offline(example, capsys):
    assert run_pipeline.main([str(example), "--offline"]) == 0
    assert "spec valid:" in capsys.readouterr().out


def test_a_bad_spec_lists_every_problem_with_its_field_and_exits_2(tmp_path, capsys):
    spec = json.loads((EXAMPLES[-1]).read_text()) if EXAMPLES[-1].suffix == ".json" else None
    assert spec is not None
    spec.update(scheme="W5A5", model_parameters_billion=-1, baseline_endpoint="someone-elses-endpoint")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    assert run_pipeline.main([str(path), "--offline"]) == 2
    err = capsys.readouterr().err
    for field in ("scheme", "model_parameters_billion", "baseline_endpoint"):
        assert f"  {field}:" in err


def test_a_quantize_instance_too_small_is_refused_offline(tmp_path, capsys):
    spec = json.loads((EXAMPLES[-1]).read_text())
    spec.update(model_parameters_billion=70.6, quantize_instance_type="ml.g5.2xlarge", algorithm="gptq")
    path = tmp_path / "big.json"
    path.write_text(json.dumps(spec))
    assert run_pipeline.main([str(path), "--offline"]) == 2
    assert "cheapest instance that fits is" in capsys.readouterr().err


def test_without_aws_configuration_it_says_so_in_one_line(monkeypatch, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert run_pipeline.main([str(EXAMPLES[0]), "--validate-only"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("AWS error:") and "--offline" in err and "Traceback" not in err
