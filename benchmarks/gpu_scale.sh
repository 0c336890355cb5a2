#!/usr/bin/env bash
# GPU scale runs of the quantize job against the bare oneshot baseline, on one
# machine, in one call (docs/benchmarks.md "GPU scale"). Usage:
#   benchmarks/gpu_scale.sh OUT_DIR ALGORITHM [LAYERS] [SAMPLES] [TOKENS]
# Needs: python3 with torch (CUDA), transformers and llm-compressor importable.
set -euo pipefail
out=$1; algorithm=$2; layers=${3:-32}; samples=${4:-128}; tokens=${5:-2048}
work=${WORK:-/tmp/llmq-gpu}
mkdir -p "$out" "$work"
results="$out/gpu-scale-$algorithm.jsonl"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if [ ! -f "$work/model/config.json" ]; then
  python3 benchmarks/make_8b_model.py --model-dir "$work/model" --calibration-dir "$work/calibration" \
    --layers "$layers" --samples "$samples" --tokens "$tokens"
fi
df -h "$work" | tail -1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: CPU run"

# The job, unchanged, with the SageMaker environment it gets in the pipeline.
rm -rf "$work/job-$algorithm" "$work/job-output"
SM_CHANNEL_MODEL="$work/model" SM_CHANNEL_CALIBRATION="$work/calibration" \
SM_MODEL_DIR="$work/job-$algorithm" SM_OUTPUT_DIR="$work/job-output" SM_INPUT_CONFIG_DIR="$work/none" \
  python3 benchmarks/measure.py --label "job-$algorithm" --out "$results" -- \
  python3 -m jobs.quantize --algorithm "$algorithm" --scheme W4A16 --group-size 128 \
    --num-calibration-samples "$samples" --max-seq-length "$tokens" --seed 0 2>&1 | grep -v "it/s\]$" | tail -25
cp "$work/job-$algorithm/manifest.json" "$out/gpu-scale-$algorithm-manifest.json" || cat "$work/job-output/failure"
du -sb "$work/job-$algorithm" | tee -a "$out/disk-$algorithm.txt"
rm -rf "$work/job-$algorithm"

# The bare baseline, same inputs.
rm -rf "$work/bare-$algorithm"
python3 benchmarks/measure.py --label "bare-$algorithm" --out "$results" -- \
  python3 benchmarks/bare_oneshot.py --model-dir "$work/model" --calibration "$work/calibration/calibration.jsonl" \
    --output "$work/bare-$algorithm" --algorithm "$algorithm" --samples "$samples" --max-seq-length "$tokens" \
    2>&1 | grep -v "it/s\]$" | tail -8
du -sb "$work/bare-$algorithm" "$work/model" | tee -a "$out/disk-$algorithm.txt"
rm -rf "$work/bare-$algorithm"
cat "$results"
