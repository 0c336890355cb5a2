"""Write a Llama-3.1-8B-shaped model with seeded random weights, a word-level
tokenizer and a calibration JSONL, for GPU scale runs of the quantize job.

No hub is reachable from the GPU machine, so everything is generated: each
calibration word is one token, which makes "N samples x L tokens" exact.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

LLAMA_8B_SHAPE = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
WORDS = 30000


def write_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for i in range(WORDS):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.model_max_length = 8192
    fast.save_pretrained(out)


def write_model(out: Path, seed: int, layers: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{**LLAMA_8B_SHAPE, "num_hidden_layers": layers}, bos_token_id=1, eos_token_id=2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, torch_dtype=torch.bfloat16)
    # Default init gives std 0.02 everywhere; that is what a random-weight scale test needs.
    model.save_pretrained(out, max_shard_size="5GB")
    del model


def write_calibration(out: Path, samples: int, tokens: int, seed: int) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "calibration.jsonl").open("w") as handle:
        for _ in range(samples):
            # A few extra words so truncation, not a short sample, sets the length.
            words = " ".join(f"w{rng.randrange(WORDS)}" for _ in range(tokens + 16))
            handle.write(json.dumps({"text": words}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--calibration-dir", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    args.model_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer(args.model_dir)
    write_model(args.model_dir, args.seed, args.layers)
    write_calibration(args.calibration_dir, args.samples, args.tokens, args.seed)
    size = sum(p.stat().st_size for p in args.model_dir.iterdir())
    seconds = round(time.perf_counter() - start, 1)
    print(json.dumps({"model_dir": str(args.model_dir), "bytes": size, "seconds": seconds}))


if __name__ == "__main__":
    main()
