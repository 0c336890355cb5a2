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
from importlib import metadata

from tests.jobs import image_contents
from tests.jobs.image_contents import REPO

DOCKERFILE = REPO / "containers" / "quantize" / "Dockerfile"
REQUIREMENTS = REPO / "containers" / "quantize" / "requirements.txt"
FROM_BASE_IMAGE = {"torch"}
ENTRY_MODULE = "jobs.quantize"


def instructions() -> list[tuple[str, str]]:
    return image_contents.instructions(DOCKERFILE)


def pinned_requirements() -> dict[str, str]:
    return image_contents.pinned_requirements(REQUIREMENTS)


def test_image_builds_from_the_base_image_build_argument_without_a_default():
    steps = instructions()
    keywords = [keyword for keyword, _ in steps]
    assert steps[0] == ("ARG", "BASE_IMAGE"), "declare BASE_IMAGE first and without a default (one definition)"
    assert [args for keyword, args in steps if keyword == "FROM"] == ["${BASE_IMAGE}"]
    assert keywords.index("ARG") < keywords.index("FROM")
    text = " ".join(args for _, args in steps)
    assert not re.search(r"dkr\.ecr\.|pytorch/pytorch:|python:\d", text), "a base image is hard-coded"


def test_every_pin_accepts_the_base_images_torch_and_python():
    checked = image_contents.pins_that_constrain_torch(pinned_requirements())
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
    files, _ = image_contents.job_imports(ENTRY_MODULE)
    sources = image_contents.copied_sources(DOCKERFILE)
    assert REPO / "jobs" / "quantize" / "__main__.py" in files
    for path in files:
        relative = path.relative_to(REPO)
        assert image_contents.is_copied(path, sources), (
            f"{relative} is imported by the job but not copied into the image"
        )


def test_the_image_holds_only_the_quantize_package_and_the_shared_plumbing():
    """No pilot, no evaluate job, no operator CLI in the quantize image."""
    jobs_sources = [source for source in image_contents.copied_sources(DOCKERFILE) if source.startswith("jobs")]
    assert jobs_sources, "the job code is not copied"
    allowed = ("jobs/__init__.py", "jobs/quantize/", "jobs/sagemaker_job/")
    assert all(source in allowed for source in jobs_sources), jobs_sources


def test_every_third_party_import_is_pinned_at_the_tested_version():
    _, third_party = image_contents.job_imports(ENTRY_MODULE)
    pins = pinned_requirements()
    assert {"llmcompressor", "compressed_tensors", "transformers", "datasets", "torch"} <= third_party
    for module in sorted(third_party - FROM_BASE_IMAGE):
        dists = image_contents.distributions_of(module)
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
