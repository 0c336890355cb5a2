"""Held-out text for checking a quantized artifact (the quantize tests and the CPU benchmark).

``pydoc_texts``: offline English text every Python ships (``pydoc_data.topics``), split into
disjoint calibration and held-out parts, so perplexity is never measured on calibration text.
The perplexity itself is the project's one implementation, jobs/sagemaker_job/perplexity.py
(this module's own non-overlapping-window perplexity was removed: docs/evaluate.md "Perplexity").
"""

from __future__ import annotations

# Topics at the end of the sorted list are held out (about 48k tokens); calibration draws from
# the others, so the two never overlap.
HELD_OUT_TOPICS = 20


def pydoc_texts() -> tuple[list[str], str]:
    """(calibration texts, held-out text): disjoint sets of ``pydoc_data.topics`` entries."""
    from pydoc_data.topics import topics  # noqa: PLC0415  (1 MB of text, only when asked)

    keys = sorted(topics)
    calibration = [topics[k] for k in keys[:-HELD_OUT_TOPICS] if len(topics[k]) > 200]
    held_out = "\n\n".join(topics[k] for k in keys[-HELD_OUT_TOPICS:])
    return calibration, held_out
