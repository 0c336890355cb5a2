"""The functions' dependency layer, built for the Lambda platform from lambda/requirements.txt.

`python -m stacks.lambda_layer` (run by `make setup`) installs the pinned
requirements with pip for the target runtime's Python and manylinux x86_64,
wheels only, into build/lambda-layer/<hash>/python. The folder name is a hash
of lambda/requirements.txt and the target, so a changed pin builds a new
folder and an unchanged one is reused. Synth only reads the folder
(`layer_dir()`): it needs neither the network nor Docker, and stops with a
clear message when the layer has not been built.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "lambda" / "requirements.txt"
BUILD_DIR = ROOT / "build" / "lambda-layer"
# The runtime the layer is built for (stacks/python_function.py uses the same one).
PYTHON_VERSION = "3.14"
PLATFORM = "manylinux2014_x86_64"
COMPLETE = ".complete"


class LayerNotBuiltError(RuntimeError):
    """Synth found no layer built from the current lambda/requirements.txt."""


def _digest() -> str:
    text = f"{PYTHON_VERSION}\n{PLATFORM}\n{REQUIREMENTS.read_text()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layer_dir() -> Path:
    """The built layer's root (it holds python/); raises LayerNotBuiltError when it is missing."""
    target = BUILD_DIR / _digest()
    if not (target / COMPLETE).is_file():
        raise LayerNotBuiltError(
            f"the Lambda dependency layer for lambda/requirements.txt is not built ({target} is missing): "
            "run `make setup` (or `.venv/bin/python -m stacks.lambda_layer`) once with access to PyPI"
        )
    return target


def build(*, python: str = sys.executable) -> Path:
    """pip-install the requirements for the Lambda platform into build/lambda-layer/<hash>/ (no-op when built)."""
    target = BUILD_DIR / _digest()
    if (target / COMPLETE).is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--platform",
            PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            "--target",
            str(partial / "python"),
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    # Console scripts are of no use in a layer.
    shutil.rmtree(partial / "python" / "bin", ignore_errors=True)
    (partial / COMPLETE).touch()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


if __name__ == "__main__":
    print(build())
