"""The artifact is staged inside SM_MODEL_DIR, so publishing it never crosses a mount.

SageMaker mounts /opt/ml/model on its own volume: a rename from anywhere outside it fails with
EXDEV. Here the output directory is made a "mount point" by an os.rename that refuses every
move across its boundary, exactly as the kernel would.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from contracts.artifact_layout import MANIFEST_FILE
from jobs.quantize import artifact, job


def test_staging_is_a_hidden_directory_inside_the_output_on_the_same_filesystem(tmp_path):
    output = tmp_path / "model"
    staging = artifact.make_staging(output)
    assert staging.parent == output
    assert staging.name.startswith(".") and staging.name.startswith(artifact.STAGING_PREFIX)
    assert staging.stat().st_dev == output.stat().st_dev


def test_publish_moves_within_the_output_tree_and_the_manifest_last(tmp_path, monkeypatch):
    output = tmp_path / "model"
    staging = artifact.make_staging(output)
    for name in ("config.json", MANIFEST_FILE, "model.safetensors", "tokenizer.json"):
        (staging / name).write_text(name)
    moves: list[tuple[Path, Path]] = []
    real_rename = os.rename

    def recording_rename(src, dst, *args, **kwargs):
        moves.append((Path(src), Path(dst)))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", recording_rename)
    artifact.publish(staging, output)
    assert [dst.name for _, dst in moves][-1] == MANIFEST_FILE
    assert all(src.parent == staging and dst.parent == output for src, dst in moves), moves
    assert sorted(p.name for p in output.iterdir()) == sorted(
        ["config.json", MANIFEST_FILE, "model.safetensors", "tokenizer.json"]
    )


def test_publish_refuses_a_staging_directory_outside_the_output(tmp_path):
    outside = tmp_path / ".model.partial-1"
    outside.mkdir()
    with pytest.raises(ValueError, match="inside"):
        artifact.publish(outside, tmp_path / "model")


@pytest.fixture
def output_is_a_mount(monkeypatch):
    """Make ``os.rename`` fail with EXDEV across the boundary of the directory it returns."""
    mounts: list[Path] = []
    real_rename = os.rename

    def inside(path, mount: Path) -> bool:
        return Path(path).resolve().is_relative_to(mount)

    def rename(src, dst, *args, **kwargs):
        for mount in mounts:
            if inside(src, mount) != inside(dst, mount):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), None, str(dst))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        mounts.append(path.resolve())
        return path

    return mount


def test_job_publishes_into_a_mounted_output_directory(run_job, tiny_model_dir, tmp_path, output_is_a_mount):
    output = output_is_a_mount(tmp_path / "opt-ml" / "model")
    result = run_job(tiny_model_dir, "--algorithm", "rtn", "--scheme", "W8A16", output=output)
    assert result.code == 0, result.failure
    assert (output / MANIFEST_FILE).is_file() and (output / "config.json").is_file()
    assert not result.staging_dirs(), "staging left behind"
    assert not any(p.name.startswith(".") for p in output.iterdir())
    assert set(result.manifest["artifact"]["files"]) == {p.name for p in output.iterdir()} - {MANIFEST_FILE}


def test_failure_in_a_mounted_output_leaves_it_empty_and_in_place(run_job, tiny_model_dir, tmp_path, monkeypatch):
    """The mount point (SageMaker's /opt/ml/model) stays; nothing finished-looking is left in it."""
    output = tmp_path / "opt-ml" / "model"
    output.mkdir(parents=True)

    def crash(**_: object) -> dict[str, object]:
        raise RuntimeError("simulated crash while saving")

    monkeypatch.setattr(job, "quantize_into", crash)
    result = run_job(tiny_model_dir, "--algorithm", "rtn", output=output)
    assert result.code == 2 and "simulated crash" in (result.failure or "")
    assert output.is_dir() and not list(output.iterdir())


def test_stale_staging_from_an_interrupted_run_is_named_in_the_refusal(run_job, tiny_model_dir, tmp_path):
    output = tmp_path / "model"
    (output / f"{artifact.STAGING_PREFIX}12345").mkdir(parents=True)
    result = run_job(tiny_model_dir, "--algorithm", "rtn", output=output)
    assert result.code == 1
    assert "interrupted run" in (result.failure or "") and ".partial-12345" in (result.failure or "")
