"""The execution input model (lambda/validate_input/run_spec.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lambda" / "validate_input"))

from run_plan_builder import resource_name  # noqa: E402
from run_spec import validate_spec  # noqa: E402

from tests.run_spec_support import DEFAULTS as SHARED_DEFAULTS  # noqa: E402

DEFAULTS = SHARED_DEFAULTS


def spec(**overrides):
    base = {
        "model_name": "llama-8b",
        "source_model_uri": "s3://artifacts-bucket/sources/llama-8b/",
        "model_parameters_billion": 8.03,
        "calibration_uri": "s3://artifacts-bucket/datasets/cal/",
        "validation_uri": "s3://shared-models/datasets/val/",
        "algorithm": "gptq",
        "scheme": "W4A16",
        "baseline_endpoint": "llmq-dev-chat",
        "canary": [{"weight": 5, "bake_minutes": 30}, {"weight": 100, "bake_minutes": 60}],
    }
    base.update(overrides)
    return base


def fields(outcome):
    return [p.field for p in outcome.problems]


def test_a_valid_spec_yields_a_plan_with_names_derived_from_the_run():
    outcome = validate_spec(spec(run_id="r1"), DEFAULTS)
    assert outcome.valid, outcome.message
    run = outcome.run
    assert run["names"]["training_job"] == "llmq-dev-llama-8b-r1-q"
    assert run["names"]["endpoint_config"] == "llmq-dev-llama-8b-r1"
    assert run["names"]["package_group"] == "llmq-dev-llama-8b"
    assert run["names"]["alarm_prefix"] == "llmq-dev-chat-candidate-"
    assert run["s3"]["artifact_uri"] == "s3://artifacts-bucket/models/llama-8b/r1/llmq-dev-llama-8b-r1-q/output/model/"
    assert run["hyperparameters"]["group-size"] == "128"  # the grouped scheme's default
    assert run["canary"]["steps"][0] == {"candidate": 5, "baseline": 95, "bake_seconds": 1800, "index": 1}
    assert run["images"]["serving"] == DEFAULTS.serving_image_uri
    assert run["instances"]["quantize"] == "ml.g5.4xlarge"


def test_the_candidate_joins_the_endpoint_at_weight_0_and_the_first_step_sets_the_first_weights():
    run = validate_spec(spec(run_id="r1"), DEFAULTS).run
    candidate = run["canary"]["candidate_at_zero"]
    assert candidate["VariantName"] == "candidate"
    assert candidate["InitialVariantWeight"] == 0
    assert candidate["ModelName"] == run["names"]["candidate_model"]
    # The bake's first step sets the plan's first weights, as every step does.
    assert run["canary"]["steps"][0]["candidate"] == 5


def test_the_evaluate_job_reads_configs_and_the_manifest_and_measures_both_variants_on_the_endpoint():
    run = validate_spec(spec(run_id="r1", serving_instance_type="ml.g6.2xlarge"), DEFAULTS).run
    s3 = run["s3"]
    assert s3["baseline_config_uri"] == "s3://artifacts-bucket/sources/llama-8b/config.json"
    assert s3["candidate_config_uri"] == f"{s3['artifact_uri']}config.json"
    assert s3["manifest_uri"] == "s3://artifacts-bucket/models/llama-8b/r1/manifest.json"
    args = run["evaluate_arguments"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags == {
        "--baseline-dir": "/opt/ml/processing/input/baseline",
        "--candidate-dir": "/opt/ml/processing/input/candidate",
        "--manifest-dir": "/opt/ml/processing/input/manifest",
        "--validation": "/opt/ml/processing/input/validation",
        "--output-dir": "/opt/ml/processing/output",
        "--failure-dir": "/opt/ml/output",
        "--baseline-endpoint": "llmq-dev-chat",
        "--baseline-variant": "AllTraffic",
        "--candidate-endpoint": "llmq-dev-chat",
        "--candidate-variant": "candidate",
        "--region": "us-east-1",
        "--serving-protocol": "lmi",
        "--measured-instance-type": "ml.g6.2xlarge",
        "--max-ppl-increase-pct": "5.0",
        "--max-p95-latency-ratio": "1.2",
        "--min-throughput-ratio": "1.0",
    }


def test_the_evaluate_job_runs_on_a_small_cpu_instance_with_the_volume_key():
    run = validate_spec(spec(run_id="r1", evaluate_instance_type="ml.m5.xlarge"), DEFAULTS).run
    processing = run["resources"]["processing"]
    assert processing["InstanceType"] == "ml.m5.xlarge"
    assert processing["VolumeSizeInGB"] <= 50
    # m5 is EBS-only: the volume takes the project key.
    assert processing["VolumeKmsKeyId"] == DEFAULTS.kms_key_arn


def test_every_problem_is_reported_at_once_with_its_field():
    outcome = validate_spec(
        spec(
            model_name="Llama_8B",
            source_model_uri="s3://elsewhere/m/",
            calibration_uri="not-a-uri",
            algorithm="awq",
            scheme="W8A8",
            group_size=100,
            baseline_endpoint="llmq-dev-other",
            serving_instance_type="ml.x9.huge",
            canary=[{"weight": 50, "bake_minutes": 1}, {"weight": 40, "bake_minutes": 1}],
        ),
        DEFAULTS,
    )
    assert not outcome.valid
    assert set(fields(outcome)) == {
        "model_name",
        "calibration_uri",
        "serving_instance_type",
        "canary",
        "scheme",
        "group_size",
        "source_model_uri",
        "baseline_endpoint",
    }
    assert outcome.message.startswith(f"{len(outcome.problems)} problem(s)")


@pytest.mark.parametrize(
    ("algorithm", "scheme", "valid"),
    [
        ("awq", "W4A16", True),
        ("awq", "W8A8", False),
        ("smoothquant-gptq", "W8A8", True),
        ("gptq", "FP8_DYNAMIC", False),
    ],
)
def test_only_supported_algorithm_scheme_pairs_pass(algorithm, scheme, valid):
    # An instance big enough for any 8B job, so only the pair decides.
    raw = spec(algorithm=algorithm, scheme=scheme, group_size=None, quantize_instance_type="ml.p5e.48xlarge")
    outcome = validate_spec(raw, DEFAULTS)
    assert outcome.valid is valid, outcome.message


def test_group_size_is_refused_for_per_channel_schemes():
    outcome = validate_spec(spec(algorithm="rtn", scheme="W8A8", group_size=128), DEFAULTS)
    assert fields(outcome) == ["group_size"]


@pytest.mark.parametrize(
    "canary",
    [
        [{"weight": 10, "bake_minutes": 1}, {"weight": 50, "bake_minutes": 1}],  # does not end at 100
        [{"weight": 50, "bake_minutes": 1}, {"weight": 50, "bake_minutes": 1}, {"weight": 100, "bake_minutes": 1}],
        [],
    ],
)
def test_canary_plan_must_rise_and_end_at_full_traffic(canary):
    assert fields(validate_spec(spec(canary=canary), DEFAULTS)) == ["canary"]


def test_run_id_is_derived_from_the_content_when_absent_and_is_stable():
    first = validate_spec(spec(), DEFAULTS).run
    again = validate_spec(spec(), DEFAULTS).run
    other = validate_spec(spec(scheme="W4A16_ASYM"), DEFAULTS).run
    assert first["run_id"] == again["run_id"]
    assert first["run_id"] != other["run_id"]


def test_image_overrides_must_be_ecr_uris():
    assert fields(validate_spec(spec(serving_image_uri="docker.io/vllm/vllm:latest"), DEFAULTS)) == [
        "serving_image_uri"
    ]
    ok = validate_spec(spec(serving_image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/serve:1.0"), DEFAULTS)
    assert ok.run["images"]["serving"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/serve:1.0"


def test_a_non_object_input_is_one_problem():
    assert fields(validate_spec(["not", "a", "spec"], DEFAULTS)) == ["<root>"]


def test_long_names_are_hashed_within_63_characters_and_keep_their_suffix():
    name = resource_name("llmq-production", "a" * 32, "r" * 20, "candidate")
    assert len(name) <= 63
    assert name.endswith("-candidate")
    assert name != resource_name("llmq-production", "a" * 32, "r" * 19 + "s", "candidate")


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "examples").glob("*.*")), ids=lambda p: p.name)
def test_documented_examples_are_valid_specs(path):
    import yaml

    text = path.read_text().replace("ARTIFACT_BUCKET", DEFAULTS.artifact_bucket)
    raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    outcome = validate_spec(raw, DEFAULTS)
    assert outcome.valid, outcome.message


def auto_spec(**overrides):
    raw = spec(**{"recipe": "auto", **overrides})
    if "algorithm" not in overrides:
        raw.pop("algorithm")
    return raw


def test_recipe_auto_passes_the_search_and_its_budget_to_the_quantize_job():
    outcome = validate_spec(auto_spec(run_id="r1", scheme="W8A8", search_budget_minutes=30), DEFAULTS)
    assert outcome.valid, outcome.message
    run = outcome.run
    assert run["algorithm"] == "auto"  # what the manifest names too (the record step compares them)
    assert run["hyperparameters"]["recipe"] == "auto"
    assert run["hyperparameters"]["search-budget-seconds"] == "1800"
    assert "algorithm" not in run["hyperparameters"]
    # A fixed recipe passes its algorithm and no recipe.
    fixed = validate_spec(spec(run_id="r1"), DEFAULTS).run["hyperparameters"]
    assert fixed["algorithm"] == "gptq" and "recipe" not in fixed


def test_recipe_auto_takes_no_algorithm_and_fixed_needs_one():
    both = validate_spec(auto_spec(algorithm="gptq"), DEFAULTS)
    assert fields(both) == ["algorithm"] and "leave it out" in both.problems[0].message
    neither = spec()
    neither.pop("algorithm")
    assert fields(validate_spec(neither, DEFAULTS)) == ["algorithm"]
    assert fields(validate_spec(auto_spec(recipe="searched"), DEFAULTS)) == ["recipe"]


def test_recipe_auto_budget_must_end_within_the_quantize_time_limit():
    outcome = validate_spec(auto_spec(search_budget_minutes=120, timing={"quantize_max_hours": 2}), DEFAULTS)
    assert fields(outcome) == ["search_budget_minutes"]


def test_recipe_auto_is_sized_for_the_most_demanding_algorithm_it_may_run():
    """W4A16 may run AWQ (its cached activations size the GPU): an instance too small for an
    AWQ job is refused for recipe auto although GPTQ would fit it."""
    small = "ml.g5.4xlarge"
    assert validate_spec(spec(quantize_instance_type=small), DEFAULTS).valid
    assert fields(validate_spec(spec(algorithm="awq", quantize_instance_type=small), DEFAULTS)) == [
        "quantize_instance_type"
    ]
    assert fields(validate_spec(auto_spec(quantize_instance_type=small), DEFAULTS)) == ["quantize_instance_type"]
    # The search runs in one process: several GPUs do not split AWQ's cached activations.
    four_gpus = "ml.g5.24xlarge"
    assert validate_spec(spec(algorithm="awq", quantize_instance_type=four_gpus), DEFAULTS).valid
    assert fields(validate_spec(auto_spec(quantize_instance_type=four_gpus), DEFAULTS)) == ["quantize_instance_type"]
    # W8A8 may run SmoothQuant-GPTQ at most, which that instance holds.
    assert validate_spec(auto_spec(scheme="W8A8", group_size=None, quantize_instance_type=small), DEFAULTS).valid
