"""The support table and hyperparameter validation (pure Python, shared with the Lambda)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from contracts import support_table
from jobs.quantize import support as qs
from jobs.quantize.support import LinearShape, resolve_group_size, validate_hyperparameters

REPO = Path(__file__).resolve().parents[3]


def test_support_module_imports_only_the_standard_library():
    tree = ast.parse((REPO / "jobs" / "quantize" / "support.py").read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "re", "collections", "dataclasses", "typing", "contracts"}


def test_every_refused_pair_says_what_to_use_instead():
    for algorithm in support_table.ALGORITHMS:
        for scheme in support_table.SCHEMES:
            if (algorithm, scheme) in support_table.SUPPORTED:
                assert qs.pair_problem(algorithm, scheme) is None
                assert (algorithm, scheme) not in support_table.REFUSALS
            else:
                message = qs.pair_problem(algorithm, scheme)
                assert message is not None and (algorithm, scheme) in support_table.REFUSALS
                assert "use " in message, message


def test_table_rules_awq_weight_only_and_smoothquant_only_w8a8():
    for algorithm, scheme in support_table.SUPPORTED:
        if algorithm == "awq":
            assert support_table.SCHEME_INFO[scheme].weight_only
        if algorithm == "smoothquant-gptq":
            assert scheme == "W8A8"
    assert all(("rtn", scheme) in support_table.SUPPORTED for scheme in support_table.SCHEMES)


def test_docs_show_the_same_support_table():
    assert qs.support_table_markdown() in (REPO / "docs" / "quantize.md").read_text()


def test_string_hyperparameters_as_sagemaker_passes_them_are_accepted():
    hp, problems = validate_hyperparameters(
        {"algorithm": "GPTQ", "scheme": "w8a8", "group-size": "64", "num_calibration_samples": "32", "seed": "7"}
    )
    assert problems == []
    assert hp is not None
    assert (hp.algorithm, hp.scheme, hp.group_size, hp.num_calibration_samples, hp.seed) == ("gptq", "W8A8", 64, 32, 7)


def test_every_problem_is_reported_at_once():
    hp, problems = validate_hyperparameters(
        {"algorithm": "magic", "scheme": "W2A2", "group_size": "100", "max_seq_length": "x", "colour": "red"}
    )
    assert hp is None
    text = "\n".join(problems)
    for fragment in ("colour", "algorithm must be one of", "scheme must be one of", "group_size", "max_seq_length"):
        assert fragment in text
    assert len(problems) == 5


def test_unsupported_pair_is_a_validation_problem():
    _, problems = validate_hyperparameters({"algorithm": "awq", "scheme": "W8A8"})
    assert problems and "smoothquant-gptq" in problems[0]


@pytest.mark.parametrize("bad", ["0", "-1", "96", "256", "64.0", "true"])
def test_group_size_outside_the_kernel_sizes_is_refused(bad):
    _, problems = validate_hyperparameters({"group_size": bad})
    assert any("group_size" in p for p in problems)


def test_ignore_accepts_comma_lists_and_rejects_bad_regex():
    hp, _ = validate_hyperparameters({"ignore": "model.layers.0.mlp.down_proj, re:.*k_proj$"})
    assert hp is not None and hp.ignore == ("model.layers.0.mlp.down_proj", "re:.*k_proj$")
    _, problems = validate_hyperparameters({"ignore": "re:(["})
    assert problems and "regular expression" in problems[0]


def layers(*in_features: int) -> list[LinearShape]:
    return [LinearShape(f"model.layers.{i}.proj", f, 64) for i, f in enumerate(in_features)] + [
        LinearShape("lm_head", 576, 49152)
    ]


def test_group_size_is_reduced_to_the_largest_size_dividing_every_layer():
    resolution = resolve_group_size(128, layers(576, 1536), ignore=(), grouped=True)
    assert resolution.effective == 64
    assert resolution.changes[0]["action"] == "group_size_reduced" and "576" in resolution.changes[0]["reason"]
    assert resolution.ignore == ["lm_head"] and resolution.quantized_layers == 2


def test_group_size_kept_when_every_layer_divides():
    resolution = resolve_group_size(128, layers(1024, 4096), ignore=(), grouped=True)
    assert resolution.effective == 128 and resolution.changes == []


def test_layer_no_supported_group_size_divides_is_ignored_with_a_reason():
    resolution = resolve_group_size(128, layers(192, 200), ignore=(), grouped=True)
    assert resolution.effective == 64
    assert "model.layers.1.proj" in resolution.ignore
    ignored = [c for c in resolution.changes if c["action"] == "ignored"]
    assert ignored and "200" in ignored[0]["reason"]


def test_user_ignore_patterns_exclude_layers_from_the_rule():
    resolution = resolve_group_size(128, layers(1024, 200), ignore=("re:.*\\.1\\.proj$",), grouped=True)
    assert resolution.effective == 128 and resolution.changes == []
    assert resolution.quantized_layers == 1


def test_channelwise_schemes_have_no_group_size():
    resolution = resolve_group_size(128, layers(200), ignore=(), grouped=False)
    assert resolution.effective is None and resolution.changes == [] and resolution.quantized_layers == 1
