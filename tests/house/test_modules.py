"""The house rules a reader relies on, checked over every module of pipeline/ and encoders/."""

import ast
import itertools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p for package in ("pipeline", "encoders") for p in (REPO / package).glob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_says_what_it_is_for_in_its_first_line(path):
    if path.name == "__main__.py":
        return
    docstring = ast.get_docstring(_tree(path))
    assert docstring, "a module docstring"
    assert len(docstring.splitlines()[0]) <= 120


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_module_logger_is_used(path):
    source = path.read_text(encoding="utf-8")
    if "logger = logging.getLogger(__name__)" in source:
        assert "logger." in source, "unused logger"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_function_imports_again_what_the_module_already_imports(path):
    tree = _tree(path)
    top = {alias.asname or alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
           for alias in node.names}
    again = [
        f"{alias.asname or alias.name} (line {node.lineno})"
        for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names if (alias.asname or alias.name) in top
    ]
    assert not again


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_constants_are_used(path):
    """A module-level UPPER_CASE name nobody reads is dead code."""
    tree = _tree(path)
    constants = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                 if isinstance(target, ast.Name) and target.id.isupper()}
    used_here = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    elsewhere = " ".join(p.read_text(encoding="utf-8") for p in _project_sources() if p != path)
    unused = [c for c in constants - used_here if c not in elsewhere]
    assert not unused


def _project_sources() -> list[Path]:
    """The repository's own Python files: none under a hidden directory (virtualenvs such as bench/.venv-st)."""
    found = []
    for directory, subdirectories, files in os.walk(REPO):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        found += [Path(directory) / name for name in files if name.endswith(".py")]
    return found


def test_readme_says_what_raw_holds_for_every_dead_letter_reason():
    """Every reason the code gives a dead letter (`DeadLetter(source, line, reason, ...)` or a module's
    `dead(reason, ...)` helper) has a row in README's dead-letter table."""
    reasons = set()
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            position = {"DeadLetter": 2, "dead": 0}.get(node.func.id)
            if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Constant):
                reasons.add(node.args[position].value)
    assert {"undecodable", "invalid_csv", "duplicate_id", "kept_field_type", "encode_error", "missing_id"} <= reasons
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "| `reason` | `raw` holds |") + 2
    table = itertools.takewhile(lambda line: line.strip().startswith("|"), lines[start:])
    listed = {reason for line in table for reason in line.split("|")[1].replace("`", "").replace(",", " ").split()}
    assert reasons <= listed, reasons - listed
