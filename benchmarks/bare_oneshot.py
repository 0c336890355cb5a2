"""The bare llm-compressor baseline for the GPU scale runs: the same model,
calibration texts, tokenization and recipe as the quantize job (jobs/quantize/), with none of
the job's preflight, hashing, manifest or atomic publishing.

It is deliberately written from llm-compressor's own example
(examples/quantization_w4a16/llama3_example.py) rather than by importing the
job, so the comparison measures the job's overhead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, required=True, help="a JSONL file of {'text': ...} records")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--algorithm", choices=["gptq", "awq"], required=True)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--group-size", type=int, default=128)
    args = parser.parse_args()

    import torch
    from compressed_tensors.quantization import preset_name_to_scheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(args.model_dir), dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(str(args.model_dir))
    texts = [json.loads(line)["text"] for line in args.calibration.read_text().splitlines()[: args.samples]]
    encoded = tokenizer(texts, truncation=True, max_length=args.max_seq_length)
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})

    scheme = preset_name_to_scheme("W4A16", ["Linear"])
    scheme.weights.group_size = args.group_size
    quant = {"config_groups": {"group_0": scheme}, "ignore": ["lm_head"]}
    recipe = [GPTQModifier(**quant)] if args.algorithm == "gptq" else [AWQModifier(), QuantizationModifier(**quant)]
    oneshot(
        model=model,
        processor=tokenizer,
        recipe=recipe,
        dataset=dataset,
        num_calibration_samples=len(texts),
        max_seq_length=args.max_seq_length,
        shuffle_calibration_samples=False,
    )
    model.save_pretrained(str(args.output), save_compressed=True)
    tokenizer.save_pretrained(str(args.output))
    size = sum(p.stat().st_size for p in args.output.iterdir() if p.is_file())
    print(json.dumps({"artifact_bytes": size, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
