"""The shape the stacks/ package keeps: small modules, a thin workflow module, documented fragments."""

from __future__ import annotations

import ast
from pathlib import Path

STACKS = Path(__file__).resolve().parents[2] / "stacks"
FRAGMENT_MODULES = ("workflow_failure", "workflow_jobs", "workflow_canary", "workflow_promotion", "pipeline_workflow")


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_every_stacks_module_stays_under_400_lines():
    too_long = {p.name: _lines(p) for p in STACKS.glob("*.py") if _lines(p) >= 400}
    assert too_long == {}


def test_the_workflow_module_only_composes_fragments():
    assert _lines(STACKS / "pipeline_workflow.py") < 200


def test_every_fragment_documents_its_input_output_and_errors():
    for module in FRAGMENT_MODULES:
        tree = ast.parse((STACKS / f"{module}.py").read_text())
        classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
        assert classes, module
        for node in classes:
            doc = ast.get_docstring(node) or ""
            missing = [word for word in ("Input:", "Output:", "Errors:") if word not in doc]
            assert missing == [], f"{module}.{node.name} docstring lacks {missing}"
