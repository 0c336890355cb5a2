"""Bad input: non-zero exit, one clear reason in $SM_OUTPUT_DIR/failure, no finished-looking artifact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.jobs.entry_point import run_entry_point


def assert_failed_cleanly(result, *fragments: str) -> None:
    assert result.code != 0
    reason = result.failure
    assert reason is not None, "no failure file written"
    assert reason.count("\n") == 1, "the failure file holds one line"
    for fragment in fragments:
        assert fragment in reason, reason
    assert not result.finished_artifact_exists()
    assert not result.staging_dirs(), "staging left behind"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--scheme", "W2A2"), ("scheme must be one of", "W2A2")),
        (("--algorithm", "awq", "--scheme", "W8A8"), ("does not support scheme W8A8", "use smoothquant-gptq")),
        (("--algorithm", "smoothquant-gptq", "--scheme", "W4A16"), ("use awq or gptq",)),
        (("--algorithm", "gptq", "--scheme", "FP8_DYNAMIC"), ("use rtn",)),
        (("--group-size", "96"), ("group_size must be one of 128, 64, 32", "96")),
        (("--num-calibration-samples", "many"), ("num_calibration_samples must be an integer",)),
        (("--learning-rate", "3"), ("unknown argument", "--learning-rate")),
    ],
    ids=["unknown-scheme", "awq-w8a8", "smoothquant-w4a16", "gptq-fp8", "group-size-96", "samples-nan", "unknown-arg"],
)
def test_invalid_hyperparameters_are_refused(run_job, tiny_model_dir, args, fragments):
    assert_failed_cleanly(run_job(tiny_model_dir, *args), *fragments)


def test_malformed_hyperparameters_file_is_refused(run_job, tiny_model_dir, tmp_path):
    (tmp_path / "config").mkdir()  # run_job's SM_INPUT_CONFIG_DIR
    (tmp_path / "config" / "hyperparameters.json").write_text("{not json")
    result = run_job(tiny_model_dir)
    assert_failed_cleanly(result, "hyperparameters.json is not valid JSON")


def test_missing_model_directory_is_refused(run_job, tmp_path):
    assert_failed_cleanly(run_job(tmp_path / "nowhere", "--algorithm", "rtn"), "model directory not found")


def test_directory_without_config_is_refused(run_job, tmp_path):
    (tmp_path / "weights-only").mkdir()
    (tmp_path / "weights-only" / "model.safetensors").write_bytes(b"x")
    assert_failed_cleanly(run_job(tmp_path / "weights-only", "--algorithm", "rtn"), "config.json is missing")


def write_calibration(directory: Path, lines: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "set.jsonl").write_text("".join(line + "\n" for line in lines))
    return directory


@pytest.mark.parametrize(
    ("lines", "fragments"),
    [
        ([], ("calibration data is empty",)),
        ([json.dumps({"text": "fine"}), '{"text": "broken'], ("set.jsonl:2", "malformed JSON")),
        ([json.dumps({"question": "?", "answer": "!"})], ("set.jsonl:1", "unknown record shape")),
    ],
    ids=["empty", "malformed-line", "unknown-shape"],
)
def test_bad_calibration_set_is_refused(run_job, tiny_model_dir, tmp_path, lines, fragments):
    cal = write_calibration(tmp_path / "cal", lines)
    assert_failed_cleanly(run_job(tiny_model_dir, "--algorithm", "gptq", calibration=cal), *fragments)


def test_missing_calibration_channel_is_refused_for_calibrated_algorithms(run_job, tiny_model_dir):
    assert_failed_cleanly(run_job(tiny_model_dir, "--algorithm", "awq"), "calibration data not found")


def test_non_empty_output_is_never_overwritten(run_job, tiny_model_dir, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "manifest.json").write_text('{"earlier": true}')
    result = run_job(tiny_model_dir, "--algorithm", "rtn", output=out)
    assert result.code != 0 and "is not empty" in (result.failure or "")
    assert json.loads((out / "manifest.json").read_text()) == {"earlier": True}


def test_crash_after_loading_starts_leaves_no_artifact(run_job, tiny_model_dir, tmp_path):
    """Weights that cannot be read fail after preflight (staging exists): it must be cleaned up."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    result = run_job(broken, "--algorithm", "rtn", "--scheme", "W4A16")
    assert_failed_cleanly(result, "internal error")
    assert not result.output.exists()


def test_process_exit_status_and_failure_file(tmp_path, tiny_model_dir):
    """The real entry point (python -m jobs.quantize) as SageMaker starts it."""
    env = {
        **os.environ,
        "SM_CHANNEL_MODEL": str(tiny_model_dir),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_INPUT_CONFIG_DIR": str(tmp_path / "config"),
    }
    proc = run_entry_point("jobs.quantize", "--algorithm", "awq", "--scheme", "FP8_DYNAMIC", env=env, timeout=120)
    assert proc.returncode == 1
    assert "use rtn" in (tmp_path / "output" / "failure").read_text()
    assert not (tmp_path / "model").exists()
