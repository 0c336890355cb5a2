"""The quantize job's artifact: staging, atomic publish, and what its manifest records.

The artifact is staged in a hidden directory inside ``SM_MODEL_DIR`` (the same volume, so
publishing is a rename even where SageMaker mounts /opt/ml/model separately); a finished
artifact is one whose directory holds ``manifest.json``, which moves last.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import resource
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.artifact_layout import MANIFEST_FILE

# The artifact is written into ``<SM_MODEL_DIR>/.partial-<pid>`` and moved up when complete.
STAGING_PREFIX = ".partial-"


VERSIONED_PACKAGES = ("llmcompressor", "compressed-tensors", "transformers", "torch", "accelerate")


def directory_sha256(directory: Path) -> str:
    """A digest of every file's relative name and bytes: identifies the exact source model."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(1 << 23):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def directory_bytes(directory: Path, *, exclude: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and p.name not in exclude)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name.replace("-", "_")] = metadata.version(name)
    return found


def hardware() -> dict[str, Any]:
    import torch  # noqa: PLC0415

    info: dict[str, Any] = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def peak_cpu_rss_bytes() -> int:
    """This process's resident-memory high-water mark.

    Linux's ``VmHWM`` belongs to the current program image. ``ru_maxrss`` is not usable
    alone: it survives fork and exec, so a job started by a large parent (the benchmark, the
    pilot) reported the parent's 2 GiB as its own peak.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def make_staging(output: Path, name: str | None = None) -> Path:
    """A fresh hidden directory *inside* the output directory for the artifact being written.

    SageMaker mounts /opt/ml/model on its own volume, so a directory beside it (in /opt/ml)
    would be on another filesystem and the final move would fail with EXDEV. Inside the output
    directory, publishing is always a same-filesystem rename; the artifact is unfinished until
    manifest.json arrives at the top level. ``name`` (default ``.partial-<pid>``) lets a
    distributed run's launcher know the name too.
    """
    output.mkdir(parents=True, exist_ok=True)
    staging = output / (name or f"{STAGING_PREFIX}{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def publish(staging: Path, output: Path) -> None:
    """Move the finished artifact from ``staging`` up into ``output``; manifest.json moves last.

    Every move is a rename within one directory tree (``staging`` is a child of ``output``), so
    none can cross a mount; the manifest, which marks an artifact as finished, arrives after
    every other file.
    """
    if staging.parent != output:
        raise ValueError(f"staging {staging} must be a directory inside {output}")
    for child in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_FILE):
        child.rename(output / child.name)
    staging.rmdir()
