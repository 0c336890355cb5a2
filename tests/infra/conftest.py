"""Synthesize the whole app once per session (the first synth pays the jsii start-up)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from stacks.app_builder import ProjectStacks, build_stacks
from stacks.config import StageConfig, load_stage_config

ROOT = Path(__file__).resolve().parents[2]


def cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass
class SynthesizedApp:
    config: StageConfig
    stacks: ProjectStacks
    outdir: Path

    def all_stacks(self) -> list[Stack]:
        return [value for value in vars(self.stacks).values() if isinstance(value, Stack)]

    def template(self, stack: Stack) -> Template:
        return Template.from_stack(stack)

    def template_json(self, stack: Stack) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.outdir / f"{stack.artifact_id}.template.json").read_text())
        return data


def synth_stage(tmp: Path, stage: str, overrides: dict[str, Any] | None = None) -> SynthesizedApp:
    context = cdk_context()
    if overrides:
        context["stages"] = {**context["stages"], stage: {**context["stages"].get(stage, {}), **overrides}}
    config = load_stage_config(context, stage)
    app = App(context=context, outdir=str(tmp))
    stacks = build_stacks(app, config)
    # With cdk-nag registered, synth raises on any unacknowledged finding.
    app.synth()
    return SynthesizedApp(config=config, stacks=stacks, outdir=tmp)


@pytest.fixture(scope="session")
def dev_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthesizedApp]:
    yield synth_stage(tmp_path_factory.mktemp("cdk-dev"), "dev")


@pytest.fixture(scope="session")
def nat_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthesizedApp]:
    yield synth_stage(tmp_path_factory.mktemp("cdk-nat"), "dev", {"allow_nat_egress": True})
