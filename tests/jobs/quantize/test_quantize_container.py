"""The quantize image: entrypoint, user, base image, and requirements that match imports.

No Docker engine runs here, so the Dockerfile is checked as text: every module the job
imports (following jobs.* imports with ast) must either be copied into the image (jobs/quantize/
and jobs/sagemaker_job/, nothing else of jobs/), come with the base image (torch, the standard
library) or be pinned in requirements.txt, at the version .venv-quantize runs the tests with.
The base is the PyTorch training DLC of stacks/config.py ImageVersions, passed as the BASE_IMAGE
build argument (the CDK asset's value is checked in tests/infra/test_job_images.py); the pins
must accept its torch and Python.
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

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "containers" / "quantize" / "Dockerfile"
REQUIREMENTS = REPO / "containers" / "quantize" / "requirements.txt"
FROM_BASE_IMAGE = {"torch"}
ENTRY_MODULE = "jobs.quantize"


def instructions() -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line), f"not pinned with ==: {line}"
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_files(module: str) -> list[Path]:
    """The files a module name stands for: a module's .py, or a package's __init__.py (and its
    __main__.py, which ``python -m`` runs); empty for a name that is not a module (an attribute)."""
    base = REPO / module.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    return [p for p in (base / "__init__.py", base / "__main__.py") if p.is_file()]


def job_imports() -> tuple[set[Path], set[str]]:
    """(jobs files reached from the entry module, third-party top-level modules they import)."""
    seen: set[str] = set()
    files: set[Path] = set()
    third_party: set[str] = set()
    todo = [ENTRY_MODULE]
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
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                for name in names:
                    top = name.split(".")[0]
                    if top in ("jobs", "contracts"):  # ours: followed, and must be copied
                        if module_files(name):
                            todo.append(name)
                    elif top not in sys.stdlib_module_names and top != "__future__":
                        third_party.add(top)
    return files, third_party


def copied_sources() -> list[str]:
    """What the COPY instructions take from the build context (their last argument is the target)."""
    return [source for keyword, args in instructions() if keyword == "COPY" for source in args.split()[:-1]]


def is_copied(path: Path, sources: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(relative == source or (source.endswith("/") and relative.startswith(source)) for source in sources)


def test_image_builds_from_the_base_image_build_argument_without_a_default():
    steps = instructions()
    keywords = [keyword for keyword, _ in steps]
    assert steps[0] == ("ARG", "BASE_IMAGE"), "declare BASE_IMAGE first and without a default (one definition)"
    assert [args for keyword, args in steps if keyword == "FROM"] == ["${BASE_IMAGE}"]
    assert keywords.index("ARG") < keywords.index("FROM")
    text = " ".join(args for _, args in steps)
    assert not re.search(r"dkr\.ecr\.|pytorch/pytorch:|python:\d", text), "a base image is hard-coded"


def dlc_versions() -> tuple[str, str]:
    """(torch, Python) of the base: the PyTorch DLC of version X ships torch X (its Dockerfile's
    PYTORCH_VERSION); py313 is Python 3.13."""
    images = ImageVersions()
    assert images.training_framework == "pytorch"
    py = images.training_py_version.removeprefix("py")
    return images.training_version, f"{py[0]}.{py[1:]}"


def test_every_pin_accepts_the_base_images_torch_and_python():
    torch_version, python_version = dlc_versions()
    checked = []
    for dist in pinned_requirements():
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
    assert {"llmcompressor", "compressed-tensors"} <= set(checked), checked


def test_entrypoint_runs_the_quantize_job_as_root():
    """SageMaker mounts /opt/ml/* at run time: a non-root user could not write the artifact."""
    steps = instructions()
    (entrypoint,) = [args for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert ast.literal_eval(entrypoint) == ["python3", "-m", ENTRY_MODULE]
    users = [args for keyword, args in steps if keyword == "USER"]
    assert not users or users[-1] in ("root", "0", "0:0"), users
    assert not [args for keyword, args in steps if keyword == "RUN" and re.search(r"\b(useradd|adduser)\b", args)]
    assert "--chown" not in " ".join(args for keyword, args in steps if keyword == "COPY")


def test_every_jobs_module_the_job_imports_is_copied_into_the_image():
    files, _ = job_imports()
    sources = copied_sources()
    assert REPO / "jobs" / "quantize" / "__main__.py" in files
    for path in files:
        relative = path.relative_to(REPO)
        assert is_copied(path, sources), f"{relative} is imported by the job but not copied into the image"


def test_the_image_holds_only_the_quantize_package_and_the_shared_plumbing():
    """No pilot, no evaluate job, no operator CLI in the quantize image."""
    jobs_sources = [source for source in copied_sources() if source.startswith("jobs")]
    assert jobs_sources, "the job code is not copied"
    allowed = ("jobs/__init__.py", "jobs/quantize/", "jobs/sagemaker_job/")
    assert all(source in allowed for source in jobs_sources), jobs_sources


def test_every_third_party_import_is_pinned_at_the_tested_version():
    _, third_party = job_imports()
    pins = pinned_requirements()
    distributions = metadata.packages_distributions()
    assert {"llmcompressor", "compressed_tensors", "transformers", "datasets", "torch"} <= third_party
    for module in sorted(third_party - FROM_BASE_IMAGE):
        dists = {canonical(d) for d in distributions.get(module, [module])}
        pinned = dists & set(pins)
        assert pinned, f"{module} is imported by the job but none of {dists} is pinned in {REQUIREMENTS.name}"
        for dist in pinned:
            tested = metadata.version(dist)
            assert tested == pins[dist], f"{dist}: tests run {tested}, image pins {pins[dist]}"


def test_requirements_leave_torch_to_the_base_image():
    assert "torch" not in pinned_requirements()
    for name, version in pinned_requirements().items():
        installed = metadata.version(name)
        assert installed == version, f"{name}: .venv-quantize has {installed}, pinned {version}"
