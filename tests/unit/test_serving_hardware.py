"""A scheme the serving GPU cannot run fast is refused before any job starts (contracts/serving_hardware.py)."""

import pytest

from contracts.serving_hardware import GPU_BY_FAMILY, KERNEL_RULES, expected_kernel, serving_problem
from contracts.support_table import KNOWN_INSTANCE_FAMILIES, SCHEMES
from tests.run_spec_support import DEFAULTS, example_spec, validate_spec


def test_every_gpu_family_is_a_known_family_and_every_rule_a_known_scheme():
    assert set(GPU_BY_FAMILY) <= KNOWN_INSTANCE_FAMILIES
    assert set(KERNEL_RULES) <= set(SCHEMES)


@pytest.mark.parametrize(
    ("scheme", "instance", "refused_because"),
    [
        ("FP8_DYNAMIC", "ml.g5.2xlarge", "FP8 Marlin, weight-only"),  # A10G, 8.6: no fp8 compute
        ("FP8_DYNAMIC", "ml.p4d.24xlarge", "FP8 Marlin, weight-only"),  # A100, 8.0
        ("FP8_DYNAMIC", "ml.g6.2xlarge", None),  # L4, 8.9
        ("FP8_DYNAMIC", "ml.p5.48xlarge", None),  # H100, 9.0
        ("FP8_DYNAMIC", "ml.p3.2xlarge", "no kernel"),  # V100, 7.0
        ("W8A8", "ml.g4dn.xlarge", None),  # T4, 7.5: CUTLASS int8
        ("W8A8", "ml.p3.2xlarge", "no kernel"),
        ("W4A16", "ml.g4dn.xlarge", None),
        ("W4A16", "ml.p3.2xlarge", "no kernel"),
        ("W4A16", "ml.m5.xlarge", "no NVIDIA GPU"),
        ("W4A16", "ml.inf2.xlarge", "no NVIDIA GPU"),
    ],
)
def test_serving_problem(scheme, instance, refused_because):
    problem = serving_problem(scheme, instance)
    if refused_because is None:
        assert problem is None
    else:
        assert problem is not None and refused_because in problem


def test_the_slow_path_can_be_accepted_but_a_missing_kernel_cannot():
    assert serving_problem("FP8_DYNAMIC", "ml.g5.2xlarge", allow_slow=True) is None
    assert "no kernel" in (serving_problem("W8A8", "ml.p3.2xlarge", allow_slow=True) or "")


def test_expected_kernels_name_the_fallback():
    assert expected_kernel("FP8_DYNAMIC", "ml.g5.2xlarge") == "FP8 Marlin (weight-only fallback)"
    assert expected_kernel("FP8_DYNAMIC", "ml.g6e.xlarge").startswith("CUTLASS fp8")
    assert expected_kernel("BF16", "ml.g5.2xlarge").startswith("dense")


def test_the_validate_function_refuses_fp8_on_an_ampere_serving_instance_with_the_reason():
    raw = example_spec(algorithm="rtn", scheme="FP8_DYNAMIC", group_size=None)  # DEFAULTS serve on ml.g5.2xlarge
    outcome = validate_spec(raw, DEFAULTS)
    assert not outcome.valid
    problem = next(p for p in outcome.problems if p.field == "serving_instance_type")
    assert "compute capability 8.6" in problem.message and "allow_slow_serving_kernel" in problem.message
    accepted = validate_spec({**raw, "allow_slow_serving_kernel": True}, DEFAULTS)
    assert accepted.valid, accepted.message
    newer = validate_spec({**raw, "serving_instance_type": "ml.g6e.2xlarge"}, DEFAULTS)
    assert newer.valid, newer.message
