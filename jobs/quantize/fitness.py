"""The calibration fitness report of the manifest (docs/quantize.md "Calibration fitness").

Is the calibration set fit to calibrate for the traffic the model will see? The report states
the sample count, the token-length distribution (with how many samples ``max_seq_length`` cut),
duplicates, and, when the job is given the validation set (channel ``validation``,
``SM_CHANNEL_VALIDATION``), how far the calibration set is from it: the statistic the live
drift check uses (contracts/prompt_drift.py), with the calibration set as the reference, as
there. The validation set is read for this statistic only: no sample of it reaches calibration
or the automatic recipe's held-out scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.prompt_drift import MIN_PROMPTS, drift, profile
from jobs.sagemaker_job import records

LOG = logging.getLogger("quantize")


def _quantile(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def token_lengths(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    return [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def validation_texts(location: Path | None) -> list[str] | None:
    """The validation set's texts, or None without the channel (its messages joined as plain text)."""
    if location is None or not location.exists():
        return None
    return records.read_texts(location, what="validation data")


def report(
    contents: Sequence[str], lengths: Sequence[int], max_seq_length: int, validation: Sequence[str] | None
) -> dict[str, Any]:
    """The fitness report: ``contents`` are the calibration samples as plain text (what the drift
    statistic counts), ``lengths`` their token counts (untruncated)."""
    calibration = profile(contents)
    warnings: list[str] = []
    result: dict[str, Any] = {
        "samples": len(contents),
        "duplicates": calibration.duplicates,
        "tokens": {
            "min": min(lengths, default=0),
            "p50": _quantile(lengths, 0.5) if lengths else 0,
            "p90": _quantile(lengths, 0.9) if lengths else 0,
            "max": max(lengths, default=0),
            "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
            "truncated": sum(1 for n in lengths if n > max_seq_length),
            "max_seq_length": max_seq_length,
        },
        "validation_drift": None,
        "warnings": warnings,
    }
    if calibration.duplicates:
        warnings.append(f"{calibration.duplicates} of {len(contents)} calibration samples duplicate earlier ones")
    if lengths and result["tokens"]["truncated"] > len(lengths) / 2:
        warnings.append(
            f"{result['tokens']['truncated']} of {len(lengths)} samples are longer than max_seq_length "
            f"{max_seq_length} and were cut"
        )
    if validation is None:
        result["validation_drift_note"] = "no validation channel given: calibration not compared with it"
    else:
        score = drift(calibration, profile(validation))
        result["validation_drift"] = score.to_json()
        if score.drifted:
            warnings.append(
                f"the calibration set is far from the validation set (length_ks {score.length_ks:.3f}, "
                f"token_jsd {score.token_jsd:.3f}; the live drift check's thresholds): calibrate on text like "
                "the traffic the model will serve"
            )
        elif not score.judged:
            result["validation_drift_note"] = (
                f"not judged: the live drift check judges only with at least {MIN_PROMPTS} prompts on each side"
            )
    for warning in warnings:
        LOG.warning("calibration fitness: %s", warning)
    return result
