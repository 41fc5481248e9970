"""The house rules a reader relies on, checked over every module of pipeline/ and encoders/."""

import ast
import functools
import itertools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "encoders")
# Every module, in subfolders too: a check that globbed one level would go quiet as modules move into folders.
MODULES = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_the_module_list_covers_the_house():
    assert len(MODULES) >= 50, "a glob gone wrong would test nothing"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_says_what_it_is_for_in_its_first_line(path):
    if path.name == "__main__.py":
        return
    docstring = ast.get_docstring(_tree(path))
    assert docstring, "a module docstring"
    assert len(docstring.splitlines()[0]) <= 120


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_a_module_logger_is_used(path):
    source = path.read_text(encoding="utf-8")
    if "logger = logging.getLogger(__name__)" in source:
        assert "logger." in source, "unused logger"


@pytest.mark.parametrize("path", MODULES, ids=_name)
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


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_constants_are_used(path):
    """A module-level UPPER_CASE name nobody reads is dead code."""
    assert not unused_constants(path, _project_sources())


def unused_constants(path: Path, sources: dict[Path, ast.Module]) -> list[str]:
    """The UPPER_CASE names assigned at the top of path that no code reads: not by name in the module, not
    imported by name elsewhere, not read as an attribute of the module elsewhere. Names in comments,
    docstrings or longer names do not count."""
    tree = sources[path]
    constants = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                 if isinstance(target, ast.Name) and target.id.isupper()}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    parts = path.relative_to(REPO).with_suffix("").parts
    dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    package, _, last = dotted.rpartition(".")
    for other, other_tree in sources.items():
        if other == path:
            continue
        aliases = set()  # names the module is bound to in the other file
        for node in ast.walk(other_tree):
            if isinstance(node, ast.ImportFrom) and node.module == dotted:
                used |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == package:
                aliases |= {alias.asname or alias.name for alias in node.names if alias.name == last}
            elif isinstance(node, ast.Import):
                aliases |= {alias.asname or alias.name for alias in node.names if alias.name == dotted}
        for node in ast.walk(other_tree):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in aliases:
                used.add(node.attr)
    return sorted(constants - used)


def test_unused_constants_sees_through_a_name_that_only_appears_in_text():
    module = REPO / "pipeline" / "shadow.py"  # never written: the check works on parsed sources
    sources = {
        module: ast.parse("SHADOW = 1\nREAD_HERE = 2\nREAD_THERE = 3\nBY_ATTRIBUTE = 4\nprint(READ_HERE)\n"),
        REPO / "pipeline" / "other.py": ast.parse(
            "from pipeline.shadow import READ_THERE\nfrom pipeline import shadow\n"
            "SHADOW_TOO = shadow.BY_ATTRIBUTE  # SHADOW\n\"\"\"SHADOW\"\"\"\n"),
    }
    assert unused_constants(module, sources) == ["SHADOW"]


@functools.cache
def _project_sources() -> dict[Path, ast.Module]:
    """The repository's own Python files, parsed: none under a hidden directory (virtualenvs such as
    bench/.venv-st)."""
    found = {}
    for directory, subdirectories, files in os.walk(REPO):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        found |= {Path(directory) / name: _tree(Path(directory) / name) for name in files if name.endswith(".py")}
    return found


def test_every_folder_of_modules_is_a_package_setup_py_ships():
    """setup.py ships what find_packages finds: a folder of modules without __init__.py would be missing
    on Dataflow workers."""
    from setuptools import find_packages

    shipped = set(find_packages(where=str(REPO), include=setup_includes()))
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in MODULES}
    assert folders <= shipped, folders - shipped


def setup_includes() -> list[str]:
    """The include list setup.py gives find_packages."""
    for node in ast.walk(_tree(REPO / "setup.py")):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "find_packages":
            return next(ast.literal_eval(k.value) for k in node.keywords if k.arg == "include")
    raise AssertionError("setup.py calls find_packages")


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


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in it (in functions and under TYPE_CHECKING too)."""
    names = {}
    for path in MODULES:
        parts = path.relative_to(REPO).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in names}
            elif isinstance(node, ast.ImportFrom) and node.module in names:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                          for a in node.names}
        graph[name] = found - {name}
    return graph


def test_no_import_circle_and_encoders_never_import_pipeline():
    graph = import_graph()
    assert not [m for m, imported in graph.items() if m.startswith("encoders") and
                any(i.startswith("pipeline") for i in imported)]
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module):], module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            # A package imports its modules to re-export them; that is not a circle.
            if not (module.endswith(("pipeline", "encoders")) and imported.startswith(module + ".")):
                visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
