"""Every algorithm x scheme the support table allows, run for real on a tiny Llama on CPU.

Each run must produce a compressed-tensors directory whose config names the scheme, that is
smaller than the source, whose manifest is complete, and that transformers loads back and runs.
FP8_DYNAMIC runs on CPU too (llm-compressor computes fp8 with torch's float8 dtypes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from contracts.prompt_drift import PromptProfile
from contracts.support_table import SUPPORTED
from jobs.quantize.tiny_model import build_tiny_llama

# What each scheme must look like in the saved quantization_config.
EXPECTED_WEIGHTS: dict[str, dict[str, Any]] = {
    "W4A16": {"num_bits": 4, "type": "int", "strategy": "group", "symmetric": True},
    "W4A16_ASYM": {"num_bits": 4, "type": "int", "strategy": "group", "symmetric": False},
    "W8A16": {"num_bits": 8, "type": "int", "strategy": "group", "symmetric": True},
    "W3A16": {"num_bits": 3, "type": "int", "strategy": "group", "symmetric": True},
    "W8A8": {"num_bits": 8, "type": "int", "strategy": "channel"},
    "FP8_DYNAMIC": {"num_bits": 8, "type": "float", "strategy": "channel"},
}
EXPECTED_ACTIVATIONS: dict[str, dict[str, Any] | None] = {
    "W8A8": {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True},
    "FP8_DYNAMIC": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True},
}
# How a quantized Linear's weight is stored (format: pack-quantized, int-quantized, float-quantized).
STORED_WEIGHT: dict[str, tuple[str, str]] = {
    "W4A16": ("weight_packed", "torch.int32"),
    "W4A16_ASYM": ("weight_packed", "torch.int32"),
    "W8A16": ("weight_packed", "torch.int32"),
    "W3A16": ("weight_packed", "torch.int32"),
    "W8A8": ("weight", "torch.int8"),
    "FP8_DYNAMIC": ("weight", "torch.float8_e4m3fn"),
}
MANIFEST_KEYS = {
    "quantization": {"algorithm", "scheme", "group_size", "ignore", "changes"},
    "calibration": {"sha256", "samples_used"},
    "source": {"sha256"},
    "versions": {"llmcompressor", "compressed_tensors", "transformers", "torch"},
    "metrics": {"wall_seconds", "source_bytes", "artifact_bytes", "peak_cpu_rss_bytes", "peak_gpu_memory_bytes"},
    "hardware": {"device"},
}
PAIRS = sorted(SUPPORTED)
SAMPLES = ("--num-calibration-samples", "4", "--max-seq-length", "64")


def check_manifest(manifest: dict[str, Any], algorithm: str, scheme: str) -> None:
    for section, keys in MANIFEST_KEYS.items():
        missing = keys - set(manifest[section])
        assert not missing, f"manifest.{section} lacks {missing}"
    assert manifest["quantization"]["algorithm"] == algorithm
    assert manifest["quantization"]["scheme"] == scheme
    assert "lm_head" in manifest["quantization"]["ignore"]
    assert len(manifest["source"]["sha256"]) == 64
    assert manifest["metrics"]["artifact_bytes"] < manifest["metrics"]["source_bytes"]
    assert manifest["metrics"]["peak_cpu_rss_bytes"] > 0
    if algorithm == "rtn":
        assert manifest["calibration"]["samples_used"] == 0 and manifest["calibration"]["sha256"] is None
        assert manifest["calibration"]["profile"] is None
    else:
        assert manifest["calibration"]["samples_used"] == 4 and len(manifest["calibration"]["sha256"]) == 64
        # The input-drift reference: the used records' profile, readable by contracts/prompt_drift.py.
        assert PromptProfile.from_json(manifest["calibration"]["profile"]).count == 4


def dense_dtypes(model_dir: Path) -> set[str]:
    """dtypes of the tensors stored unquantized (norms, embeddings, scales)."""
    found = set()
    with safe_open(str(model_dir / "model.safetensors"), "pt") as fh:
        for key in fh.keys():  # noqa: SIM118  (safe_open is not a mapping)
            if key.endswith(("norm.weight", "embed_tokens.weight")):
                found.add(str(fh.get_tensor(key).dtype))
    return found


@pytest.mark.parametrize(("algorithm", "scheme"), PAIRS, ids=[f"{a}-{s}" for a, s in PAIRS])
def test_supported_pair_writes_a_loadable_compressed_artifact(
    run_job, tiny_model_dir, pydoc_calibration, algorithm, scheme
):
    args = ("--algorithm", algorithm, "--scheme", scheme, *SAMPLES)
    result = run_job(tiny_model_dir, *args, calibration=pydoc_calibration)
    assert result.code == 0, result.failure
    assert result.failure is None

    config = json.loads((result.output / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors"
    assert quant["quantization_status"] == "compressed"
    (group,) = quant["config_groups"].values()
    assert EXPECTED_WEIGHTS[scheme].items() <= group["weights"].items()
    expected_act = EXPECTED_ACTIVATIONS.get(scheme)
    if expected_act is None:
        assert group["input_activations"] is None
    else:
        assert expected_act.items() <= group["input_activations"].items()
    manifest = result.manifest
    check_manifest(manifest, algorithm, scheme)
    if EXPECTED_WEIGHTS[scheme]["strategy"] == "group":
        # hidden 192: 128 does not divide it, so the rule must have picked 64.
        assert group["weights"]["group_size"] == manifest["quantization"]["group_size"] == 64
    assert dense_dtypes(result.output) == {"torch.bfloat16"}
    name, dtype = STORED_WEIGHT[scheme]
    with safe_open(str(result.output / "model.safetensors"), "pt") as fh:
        assert str(fh.get_tensor(f"model.layers.0.self_attn.q_proj.{name}").dtype) == dtype
        assert str(fh.get_tensor("model.layers.0.self_attn.q_proj.weight_scale").dtype) == "torch.bfloat16"
    assert (result.output / "chat_template.jinja").is_file()
    assert (result.output / "tokenizer.json").is_file()

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(result.output))
    ids = torch.tensor([[1, 504, 2462, 314, 253, 1345]])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 6, 49152) and torch.isfinite(logits).all()


def test_layer_no_group_size_divides_is_left_unquantized_and_recorded(run_job, tmp_path, smollm2_dir):
    model = build_tiny_llama(tmp_path / "odd", num_layers=1, intermediate_size=200, tokenizer_dir=smollm2_dir)
    result = run_job(model, "--algorithm", "rtn", "--scheme", "W4A16")
    assert result.code == 0, result.failure
    manifest = result.manifest
    assert "model.layers.0.mlp.down_proj" in manifest["quantization"]["ignore"]
    assert any(c["action"] == "ignored" and "200" in c["reason"] for c in manifest["quantization"]["changes"])
    config = json.loads((result.output / "config.json").read_text())
    assert "model.layers.0.mlp.down_proj" in config["quantization_config"]["ignore"]
    with safe_open(str(result.output / "model.safetensors"), "pt") as fh:
        assert fh.get_tensor("model.layers.0.mlp.down_proj.weight").dtype == torch.bfloat16
        assert "model.layers.0.mlp.up_proj.weight_packed" in set(fh.keys())


def test_same_seed_gives_byte_identical_weights(run_job, tiny_model_dir, pydoc_calibration, tmp_path):
    args = ("--algorithm", "gptq", "--scheme", "W4A16", "--seed", "5", *SAMPLES)
    first = run_job(tiny_model_dir, *args, calibration=pydoc_calibration, output=tmp_path / "a")
    second = run_job(tiny_model_dir, *args, calibration=pydoc_calibration, output=tmp_path / "b")
    assert first.code == second.code == 0
    assert (first.output / "model.safetensors").read_bytes() == (second.output / "model.safetensors").read_bytes()
    assert first.manifest["calibration"]["sha256"] == second.manifest["calibration"]["sha256"]


def test_hyperparameters_file_is_read_and_arguments_win(run_job, tiny_model_dir):
    result = run_job(
        tiny_model_dir,
        "--scheme",
        "W8A8",
        hyperparameters={"algorithm": "rtn", "scheme": "W4A16", "seed": "3"},
    )
    assert result.code == 0, result.failure
    assert result.manifest["quantization"]["scheme"] == "W8A8"
    assert result.manifest["quantization"]["seed"] == 3
    assert result.manifest["quantization"]["group_size"] is None


def test_fewer_records_than_asked_warns_and_records_it(run_job, tiny_model_dir, tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "few.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "What is a tuple?"}]})
        + "\n"
        + json.dumps({"prompt": "def add(a, b):", "completion": " return a + b"})
        + "\n"
    )
    result = run_job(tiny_model_dir, "--algorithm", "gptq", "--scheme", "W8A16", *SAMPLES, calibration=cal)
    assert result.code == 0, result.failure
    calib = result.manifest["calibration"]
    assert calib["samples_used"] == 2 and calib["samples_requested"] == 4
    assert calib["shapes"] == {"messages": 1, "prompt_completion": 1}
    assert "fewer than the 4 asked" in calib["warnings"][0]
