"""The ONE reader of SageMaker's hyperparameters.json and of a job's command line.

SageMaker writes ``/opt/ml/input/config/hyperparameters.json`` (``SM_INPUT_CONFIG_DIR`` moves the
directory) with every value a string, as CreateTrainingJob's ``HyperParameters`` map holds them.
The SageMaker Python SDK JSON-encodes each value first, so a string arrives quoted (``"\\"gptq\\""``).
Both jobs read values the same way (``decode_value``):

- a string that is a JSON-encoded string (quoted at both ends and valid JSON) is decoded once:
  ``'"gptq"'`` -> ``gptq``, ``'"a \\"b\\""'`` -> ``a "b"``; any other string is kept as is;
- a JSON number or boolean (a hand-written file) becomes its JSON text: ``4`` -> ``"4"``,
  ``true`` -> ``"true"``; a list becomes its items joined by commas (the ``--ignore`` syntax);
- keys starting with ``sagemaker_`` are the SDK's own bookkeeping and are dropped.

Arguments given on the command line win over the file. SageMaker starts a bring-your-own
training image as ``<entrypoint> train``; ``strip_train`` drops that word.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.sagemaker_job.failure import JobFailureError

HYPERPARAMETERS_FILE = "hyperparameters.json"
SDK_PREFIX = "sagemaker_"


def decode_value(value: Any) -> str:
    """One hyperparameter value as a job reads it (see the module docstring)."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            with contextlib.suppress(json.JSONDecodeError):
                decoded = json.loads(value)
                if isinstance(decoded, str):
                    return decoded
        return value
    if isinstance(value, list | tuple):
        return ",".join(decode_value(item) for item in value)
    return json.dumps(value)


def read_hyperparameters(config_dir: Path) -> dict[str, str]:
    """``hyperparameters.json`` in ``config_dir`` as ``{name: value}`` strings; ``{}`` when absent.

    Names are kept as written (``max_ppl_increase_pct`` or ``max-ppl-increase-pct``); a file that
    is not a JSON object is a job failure that names the file.
    """
    path = config_dir / HYPERPARAMETERS_FILE
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise JobFailureError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(loaded, dict):
        raise JobFailureError(f"{path} must hold a JSON object")
    return {str(k): decode_value(v) for k, v in loaded.items() if not str(k).startswith(SDK_PREFIX)}


def as_argv(hyperparameters: dict[str, str]) -> list[str]:
    """``--name value`` pairs (underscores become dashes), for an argparse parser."""
    argv: list[str] = []
    for key, value in hyperparameters.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return argv


def hyperparameter_argv(config_dir: Path) -> list[str]:
    """``hyperparameters.json`` as ``--name value`` arguments (put them before the command line's)."""
    return as_argv(read_hyperparameters(config_dir))


def strip_train(argv: Sequence[str] | None) -> list[str]:
    """The command line (``argv``, else this process's) without the leading ``train`` that SageMaker
    adds to a training image."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[1:] if args[:1] == ["train"] else args
