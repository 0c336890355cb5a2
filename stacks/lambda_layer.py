"""A Lambda layer assembled from the build environment's installed packages.

Bundling with Docker is not available everywhere this app is synthesized, and a
pip install at synth would need the network. The build environment (.venv) is
CPython 3.11 on x86_64 and already holds the pinned packages of
lambda/requirements.txt, so the layer is a copy of those distributions and the
functions run on the matching python3.11 runtime.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "lambda" / "requirements.txt"
BUILD_DIR = ROOT / "build" / "lambda-layer"
# Present in the Lambda runtime already; copying them would only shadow it.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"})


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned_requirements() -> list[str]:
    names = []
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            installed = metadata.version(name)
            if installed != version:
                raise RuntimeError(f"lambda/requirements.txt pins {name}=={version} but {installed} is installed")
            names.append(name)
    return names


def _closure(names: list[str]) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen or name in PROVIDED_BY_RUNTIME:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            todo.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    return [seen[key] for key in sorted(seen)]


def build_layer_dir() -> Path:
    """Copy the pinned distributions into build/lambda-layer/<hash>/python and return the layer root."""
    dists = _closure(_pinned_requirements())
    files: list[tuple[Path, str]] = []
    for dist in dists:
        for file in dist.files or []:
            if file.suffix == ".pyc" or "__pycache__" in file.parts or str(file).startswith(".."):
                continue
            files.append((Path(str(file.locate())), str(file)))
    digest = hashlib.sha256("\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists).encode()).hexdigest()[:16]
    target = BUILD_DIR / digest
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        for source, relative in files:
            destination = target / "python" / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        (target / ".complete").touch()
    return target
