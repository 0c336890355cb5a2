#!/usr/bin/env bash
# GPU scale runs of the quantize job on one machine, in one call (docs/benchmarks.md "GPU scale",
# docs/quantize.md "Several GPUs"): the job on 1 GPU and on all GPUs back to back (one rank per
# GPU), each measured by benchmarks/measure.py; optionally the bare llm-compressor baseline.
# Usage:
#   benchmarks/gpu_scale.sh OUT_DIR ALGORITHM [LAYERS] [SAMPLES] [TOKENS]
# Environment:
#   RANKS  rank counts to run, in order (default "1 <number of GPUs>"), e.g. RANKS="1 2 4 8"
#   BARE=1 also run benchmarks/bare_oneshot.py (one GPU), as the first GPU scale run did
#   WORK   scratch directory for the model and the artifacts (default /tmp/llmq-gpu; the model
#          is written once and reused by later calls on the same machine)
# Results in OUT_DIR: gpu-ranks-ALGORITHM.jsonl (one line per run: wall time, peak GPU memory
# per GPU, peak host RSS / PSS / used, the manifest's per-rank peaks), the manifests, and
# disk-ALGORITHM.txt. benchmarks/gpu_ranks_table.py turns the JSON lines into
# benchmarks/results/ and a table.
# Needs: python3 with torch (CUDA), transformers and llm-compressor importable.
set -euo pipefail
out=$1; algorithm=$2; layers=${3:-32}; samples=${4:-128}; tokens=${5:-2048}
work=${WORK:-/tmp/llmq-gpu}
gpus=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU ' || true)
ranks=$(echo "${RANKS:-1 ${gpus:-1}}" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
mkdir -p "$out" "$work"
results="$out/gpu-ranks-$algorithm.jsonl"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if [ ! -f "$work/model/config.json" ]; then
  python3 benchmarks/make_8b_model.py --model-dir "$work/model" --calibration-dir "$work/calibration" \
    --layers "$layers" --samples "$samples" --tokens "$tokens"
fi
df -h "$work" /dev/shm | tail -2
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: CPU run"
echo "rank counts: $ranks"

# The job, unchanged, with the SageMaker environment it gets in the pipeline; --num-processes
# pins the rank count (the pipeline leaves it at auto: one rank per GPU).
for n in $ranks; do
  job="$work/job-$algorithm-$n"
  rm -rf "$job" "$work/job-output-$n"
  SM_CHANNEL_MODEL="$work/model" SM_CHANNEL_CALIBRATION="$work/calibration" \
  SM_MODEL_DIR="$job" SM_OUTPUT_DIR="$work/job-output-$n" SM_INPUT_CONFIG_DIR="$work/none" \
    python3 benchmarks/measure.py --label "job-$algorithm-${n}gpu" --out "$results" --manifest "$job/manifest.json" -- \
    python3 -m jobs.quantize --algorithm "$algorithm" --scheme W4A16 --group-size 128 \
      --num-calibration-samples "$samples" --max-seq-length "$tokens" --seed 0 --num-processes "$n" \
      2>&1 | grep -v "it/s\]$" | tail -25 || true
  if [ -f "$job/manifest.json" ]; then
    cp "$job/manifest.json" "$out/gpu-ranks-$algorithm-$n-manifest.json"
    du -sb "$job" | sed "s/^/$n ranks: /" | tee -a "$out/disk-$algorithm.txt"
  else
    echo "job with $n ranks failed: $(cat "$work/job-output-$n/failure" 2>/dev/null)"
  fi
  rm -rf "$job"
done

if [ "${BARE:-0}" = 1 ]; then
  # The bare baseline, same inputs, one GPU.
  rm -rf "$work/bare-$algorithm"
  python3 benchmarks/measure.py --label "bare-$algorithm" --out "$results" -- \
    python3 benchmarks/bare_oneshot.py --model-dir "$work/model" --calibration "$work/calibration/calibration.jsonl" \
      --output "$work/bare-$algorithm" --algorithm "$algorithm" --samples "$samples" --max-seq-length "$tokens" \
      2>&1 | grep -v "it/s\]$" | tail -8 || true
  du -sb "$work/bare-$algorithm" "$work/model" | tee -a "$out/disk-$algorithm.txt"
  rm -rf "$work/bare-$algorithm"
fi
cat "$results"
