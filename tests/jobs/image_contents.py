"""What a job image holds, read from its Dockerfile and requirements: the checks both images share.

A job image copies its own package, the shared plumbing and the contracts; every module the job
imports (followed from its entry module) must be copied, and every third-party import must come
with the base image or be pinned, at a version that accepts the base image's torch and Python.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from stacks.config import ImageVersions

REPO = Path(__file__).resolve().parents[2]
# Packages of this project a job follows and its image must copy.
OURS = ("jobs", "contracts")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def copied_sources(dockerfile: Path) -> list[str]:
    """What the COPY instructions take from the build context (their last argument is the target)."""
    return [source for keyword, args in instructions(dockerfile) if keyword == "COPY" for source in args.split()[:-1]]


def is_copied(path: Path, sources: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(relative == source or (source.endswith("/") and relative.startswith(source)) for source in sources)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(requirements: Path) -> dict[str, str]:
    pins = {}
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line), f"not pinned with ==: {line}"
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def module_files(module: str) -> list[Path]:
    """The files a module name stands for: a module's .py, or a package's __init__.py (and its
    __main__.py, which ``python -m`` runs); empty for a name that is not a module (an attribute)."""
    base = REPO / module.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    return [p for p in (base / "__init__.py", base / "__main__.py") if p.is_file()]


def _imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def job_imports(entry: str) -> tuple[set[Path], set[str]]:
    """(our files reached from the entry module, third-party top-level modules they import)."""
    seen: set[str] = set()
    files: set[Path] = set()
    third_party: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        # Importing jobs.a.b runs jobs/__init__.py and jobs/a/__init__.py first.
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for path in module_files(module):
            files.add(path)
            for node in ast.walk(ast.parse(path.read_text())):
                for name in _imported_names(node):
                    top = name.split(".")[0]
                    if top in OURS:
                        if module_files(name):
                            todo.append(name)
                    elif top not in sys.stdlib_module_names and top != "__future__":
                        third_party.add(top)
    return files, third_party


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide a top-level import name."""
    return {canonical(d) for d in metadata.packages_distributions().get(module, [module])}


def dlc_versions() -> tuple[str, str]:
    """(torch, Python) of the base: the PyTorch DLC of version X ships torch X (its Dockerfile's
    PYTORCH_VERSION); py313 is Python 3.13."""
    images = ImageVersions()
    assert images.training_framework == "pytorch"
    py = images.training_py_version.removeprefix("py")
    return images.training_version, f"{py[0]}.{py[1:]}"


def pins_that_constrain_torch(pins: dict[str, str]) -> list[str]:
    """Checks every pin accepts the base image's Python and torch; returns the pins that constrain torch."""
    torch_version, python_version = dlc_versions()
    checked = []
    for dist in pins:
        requires_python = metadata.metadata(dist)["Requires-Python"]
        if requires_python:
            assert SpecifierSet(requires_python).contains(python_version), f"{dist} needs Python {requires_python}"
        for raw in metadata.requires(dist) or []:
            requirement = Requirement(raw)
            if canonical(requirement.name) != "torch" or requirement.marker is not None:
                continue
            checked.append(dist)
            assert requirement.specifier.contains(torch_version), (
                f"{dist} needs torch{requirement.specifier}; the base image ships {torch_version}"
            )
    return checked
