"""The test suite itself: no module imports from a layer above its own.

The engine (Automation API, stack selection) runs the program; the program, its components,
the renderers and the local nodes it starts sit below it and never import it, so the engine
can change without touching them (issue 11).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BELOW_THE_ENGINE = ["components", "provisioning", "localnode", "program.py", "stack_config.py",
                    "stack_schema.py", "project.py"]


def imported(path: Path) -> set[str]:
    """Top-level package names ``path`` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_below_the_engine_imports_it() -> None:
    files = [p for entry in BELOW_THE_ENGINE
             for p in ([ROOT / entry] if entry.endswith(".py") else (ROOT / entry).rglob("*.py"))]
    offenders = [str(p.relative_to(ROOT)) for p in files if "engine" in imported(p)]
    assert offenders == []


def test_the_detector_sees_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from engine.workspace import open_stack\n")
    assert imported(sample) == {"engine"}
