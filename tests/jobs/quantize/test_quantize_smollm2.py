"""GPTQ on the real SmolLM2-135M: perplexity on held-out text must stay within justified bounds.

Calibration: 16 pydoc topics x 256 tokens; evaluation: 4096 tokens of *other* pydoc topics
(jobs.quantize.check.pydoc_texts keeps them disjoint), scored by the project's one perplexity
(jobs/sagemaker_job/perplexity.py: sliding window 512, stride 256).

Bounds, from reference numbers measured on this kind of machine for this model (64 samples x 512 tokens, group 64):
- W4A16: GPTQ +21.6 %, round-to-nearest +43 %. With 4x fewer samples we measured +22 %.
  The bound, +35 %, is what "GPTQ beats round-to-nearest by a clear margin" means: a GPTQ that
  silently stopped correcting errors (or a wrong group size) lands at or above RTN's +43 %.
- W8A8: round-to-nearest costs +3.1 %. The bound, +6 %, allows calibration noise but fails on
  any real damage (a broken SmoothQuant/GPTQ or a bad cast shows up as tens of percent).
"""

from __future__ import annotations

import pytest

from jobs.sagemaker_job.perplexity import model_perplexity

pytestmark = pytest.mark.slow

CALIBRATION = ("--num-calibration-samples", "16", "--max-seq-length", "256")
EVAL_TOKENS = 4096
BOUNDS_PERCENT = {"W4A16": 35.0, "W8A8": 6.0}


@pytest.fixture(scope="module")
def held_out(smollm2_dir, held_out_text) -> tuple[str, float]:
    """The held-out text and the BF16 model's perplexity on it."""
    return held_out_text, model_perplexity(smollm2_dir, [held_out_text], max_tokens=EVAL_TOKENS)["perplexity"]


@pytest.mark.parametrize("scheme", ["W4A16", "W8A8"])
def test_gptq_keeps_perplexity_within_bound(run_job, smollm2_dir, pydoc_calibration, held_out, scheme):
    held_out_text, baseline_perplexity = held_out
    args = ("--algorithm", "gptq", "--scheme", scheme, *CALIBRATION)
    result = run_job(smollm2_dir, *args, calibration=pydoc_calibration)
    assert result.code == 0, result.failure
    manifest = result.manifest
    if scheme == "W4A16":
        # SmolLM2's hidden size 576 is not divisible by 128: the rule must pick 64.
        assert manifest["quantization"]["group_size"] == 64
        assert manifest["metrics"]["artifact_bytes"] < 0.5 * manifest["metrics"]["source_bytes"]
    quantized = model_perplexity(result.output, [held_out_text], max_tokens=EVAL_TOKENS)["perplexity"]
    increase = 100.0 * (quantized / baseline_perplexity - 1.0)
    print(f"{scheme}: baseline {baseline_perplexity:.3f} -> {quantized:.3f} ({increase:+.1f} %)")
    assert increase < BOUNDS_PERCENT[scheme], f"{scheme} perplexity +{increase:.1f} % >= {BOUNDS_PERCENT[scheme]} %"
