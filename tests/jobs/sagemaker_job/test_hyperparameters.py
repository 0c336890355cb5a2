"""The one hyperparameters.json reader: both jobs read a value the same way."""

from __future__ import annotations

import json

import pytest

from jobs.evaluate.job import build_parser as evaluate_parser
from jobs.quantize.job import read_arguments
from jobs.sagemaker_job.failure import JobFailureError
from jobs.sagemaker_job.hyperparameters import (
    decode_value,
    hyperparameter_argv,
    read_hyperparameters,
    strip_train,
)


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        ("gptq", "gptq"),  # what CreateTrainingJob passes: a plain string
        ('"gptq"', "gptq"),  # what the SageMaker Python SDK writes: a JSON-encoded string
        ('"a \\"quoted\\" word"', 'a "quoted" word'),  # decoded once, escapes included
        ('"unbalanced', '"unbalanced'),  # not JSON: kept as is
        ('"1"x"', '"1"x"'),
        ("128", "128"),
        (128, "128"),  # a hand-written file: the JSON text of the value
        (0.5, "0.5"),
        (True, "true"),
        (["lm_head", "re:.*gate$"], "lm_head,re:.*gate$"),  # the --ignore syntax
    ],
)
def test_a_value_is_read_one_way(raw, read):
    assert decode_value(raw) == read


def test_sdk_bookkeeping_is_dropped_and_names_are_kept(tmp_path):
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps({"scheme": '"W8A8"', "group-size": 64, "sagemaker_program": "x", "sagemaker_region": '"r"'})
    )
    assert read_hyperparameters(tmp_path) == {"scheme": "W8A8", "group-size": "64"}
    assert hyperparameter_argv(tmp_path) == ["--scheme", "W8A8", "--group-size", "64"]
    assert read_hyperparameters(tmp_path / "missing") == {}


@pytest.mark.parametrize(("text", "message"), [("{", "is not valid JSON"), ("[1]", "must hold a JSON object")])
def test_a_bad_file_is_a_job_failure_naming_it(tmp_path, text, message):
    (tmp_path / "hyperparameters.json").write_text(text)
    with pytest.raises(JobFailureError, match=message):
        read_hyperparameters(tmp_path)


def test_both_jobs_read_the_same_file_the_same_way(tmp_path):
    """The SDK's quoting reaches the quantize and the evaluate job as the same value."""
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps({"seed": '"7"', "max_ppl_increase_pct": '"2.5"', "sagemaker_program": "x"})
    )
    assert read_arguments(["train", "--scheme", "W8A8"], tmp_path) == {
        "seed": "7",
        "max_ppl_increase_pct": "2.5",
        "scheme": "W8A8",
    }
    args = evaluate_parser().parse_args([a for a in hyperparameter_argv(tmp_path) if a not in {"--seed", "7"}])
    assert args.max_ppl_increase_pct == 2.5


def test_arguments_win_and_train_is_dropped(tmp_path):
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"scheme": "W4A16"}))
    assert read_arguments(["train", "--scheme", "W8A8"], tmp_path)["scheme"] == "W8A8"
    assert strip_train(["train", "--x", "1"]) == ["--x", "1"]
    assert strip_train(["--x", "train"]) == ["--x", "train"]
