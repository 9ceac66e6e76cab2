"""The package's architecture, checked on its source: imports flow one way (no cycles, function-level
imports included), the command line lives in ``fcinterp_fast/cli/`` alone, no pyplot in the library,
and the repository refers to nothing outside itself."""

from __future__ import annotations

import ast
import inspect
import subprocess
from pathlib import Path

import pytest

import fcinterp_fast

PACKAGE = Path(fcinterp_fast.__file__).parent
ROOT = PACKAGE.parent


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``fcinterp_fast.cli`` for ``cli/__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its body (functions included).

    ``from X import Y`` counts as importing ``X.Y`` when that is a module, else ``X``. Importing a
    module also runs its enclosing packages' ``__init__``; those count too, except the packages
    that enclose ``module`` itself (Python has imported them before it).
    """
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                found.add(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin)
    edges = set()
    for name in found:
        while name and name not in MODULES:  # fcinterp_fast._cpu (the extension) -> fcinterp_fast
            name = name.rpartition(".")[0]
        if not name.startswith("fcinterp_fast"):
            continue
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            target = ".".join(parts[:depth])
            enclosing = module == target or module.startswith(target + ".")
            if target in MODULES and target != module and not enclosing:
                edges.add(target)
    return edges


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = {module: _imports(module) for module in MODULES}
    assert graph["fcinterp_fast.api"] >= {"fcinterp_fast.config", "fcinterp_fast.result"}  # the walk sees imports
    assert "fcinterp_fast.api" in graph["fcinterp_fast.cam.base"]  # ... function-level ones too
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def _uses(module: str, names: set[str]) -> bool:
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name in names for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (
            node.module in names or any(f"{node.module}.{a.name}" in names for a in node.names)
        ):
            return True
    return False


def test_the_command_line_lives_in_cli_alone():
    parsers = [m for m in MODULES if _uses(m, {"argparse"}) and not m.startswith("fcinterp_fast.cli")]
    assert parsers == [], f"argparse outside fcinterp_fast/cli/: {parsers}"
    commands = sorted(m.rpartition(".")[2] for m in MODULES if m.startswith("fcinterp_fast.cli."))
    assert commands == ["__main__", "bench", "demo", "explain", "fit"]


def test_no_pyplot_in_the_library():
    users = [m for m in MODULES if _uses(m, {"matplotlib.pyplot"})]
    assert users == [], f"pyplot (global state, needs a display backend) in {users}"


def test_public_names_have_their_real_signatures():
    for name in ("fit", "explain", "head_weight"):
        parameters = inspect.signature(getattr(fcinterp_fast, name)).parameters
        assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters.values()), name
    assert inspect.signature(fcinterp_fast.fit).parameters["min_size"].default == fcinterp_fast.FitConfig.min_size
    assert isinstance(fcinterp_fast.available_backends(), dict)


def test_the_repository_refers_to_nothing_outside_it():
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (e.g. an unpacked sdist)")
    outside = "../" + "shared"  # written in two parts so that this file does not match itself
    offenders = [
        name
        for name in listed.splitlines()
        if (ROOT / name).is_file()
        and name.endswith((".py", ".md", ".toml", ".sh", ".cfg", ".txt", "Makefile"))
        and outside in (ROOT / name).read_text(errors="replace")
    ]
    assert offenders == []
