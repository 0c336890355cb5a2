#!/usr/bin/env python3
"""CDK entry point: load the stage config once, build the stacks, synthesize."""

from __future__ import annotations

import sys

from aws_cdk import App

from stacks.app_builder import build_stacks
from stacks.config import ConfigError, load_stage_config


def main() -> None:
    app = App()
    try:
        config = load_stage_config(_context(app), app.node.try_get_context("stage"))
    except ConfigError as exc:
        # One message, no stack: a bad config must not emit half an app.
        print(f"invalid configuration: {exc}", file=sys.stderr)
        sys.exit(1)
    build_stacks(app, config)
    app.synth()


def _context(app: App) -> dict[str, object]:
    return {
        "stages": app.node.try_get_context("stages"),
        "defaultStage": app.node.try_get_context("defaultStage"),
    }


if __name__ == "__main__":
    main()
