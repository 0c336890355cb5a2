"""The layering, held by reading every module's imports (issue: one home for every contract).

- contracts/ imports nothing of this project but itself (standard library and pydantic only);
- jobs/ never imports stacks/ (container code must not need the CDK app);
- stacks/ never imports jobs/ (the app does not ship container code) nor lambda/ code;
- lambda/ imports only contracts/ of this project (plus its own folder and lambda/shared/);
- nothing imports the pilot (jobs.pilot) but the pilot itself, nor the operator CLIs
  (stacks.run_pipeline, stacks.operator_commands) but themselves; tests may import them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"contracts", "stacks", "jobs", "tests", "benchmarks", "app"}
PILOT = "jobs.pilot"
CLI = "stacks.run_pipeline"
OPERATOR_COMMANDS = "stacks.operator_commands"


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _own(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _violations(folder: str, forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(folder)
        for name in _imports(path)
        if name.split(".")[0] in forbidden
    ]


def test_contracts_import_only_the_standard_library_pydantic_and_themselves():
    allowed = set(sys.stdlib_module_names) | {"__future__", "pydantic", "contracts"}
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("contracts")
        for name in _imports(path)
        if name.split(".")[0] not in allowed
    ]
    assert bad == []


def test_jobs_never_import_the_cdk_app():
    assert _violations("jobs", {"stacks", "app", "aws_cdk", "constructs"}) == []


def test_the_cdk_app_never_imports_container_code():
    assert _violations("stacks", {"jobs"}) == []


def test_lambda_code_imports_only_the_contracts_of_this_project():
    assert _violations("lambda", OURS - {"contracts"}) == []


@pytest.mark.parametrize("entry", [PILOT, CLI, OPERATOR_COMMANDS])
def test_nothing_but_tests_imports_the_pilot_or_the_operator_cli(entry):
    users = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("contracts", "stacks", "jobs", "lambda", "benchmarks")
        for path in _modules(folder)
        if not _own(path).startswith(entry)
        for name in _imports(path)
        if name == entry or name.startswith(f"{entry}.")
    ]
    assert users == []
