"""The layer rules of DESIGN.md and docs/architecture.md, made executable.

* chipctl -> procedures -> drivers, never upward; drivers and procedures never import h5py or
  textual; driver code outside drivers/sim never imports the simulator (it is reached by URL,
  through the package metadata's ``chipctl.url_handlers`` entry points).
* Inside chipctl, the front ends (cli, tui, demo) sit above the library (catalog, runner,
  runfile, station, calibration, sweep, ...); the library never imports a front end.
* No import circles inside any package.

"Imports" here are import statements *and* strings that name a module of ours (a catalog's
``"module:Class"``, a lazy ``import_module("...")`` table, a pyserial handler package): a
dependency hidden in a string is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("drivers", "procedures", "chipctl")

FORBIDDEN = {
    "drivers": {"chipctl", "procedures", "h5py", "textual", "rich"},
    "procedures": {"chipctl", "h5py", "textual", "rich"},
}
FRONT_ENDS = ("chipctl.cli", "chipctl.tui", "chipctl.demo")
"""chipctl's front ends: modules (and packages) that only the front ends themselves import."""

MODULE_STRING = re.compile(r"^(chipctl|procedures|drivers)(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _exists(module: str) -> bool:
    """Whether ``module`` is one of our modules or packages (a string naming it is an import)."""
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement and every string naming one of our modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ".".join(path.relative_to(ROOT).parts[: -node.level])
                name = f"{package}.{node.module}" if node.module else package
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from package import submodule` depends on the submodule itself
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MODULE_STRING.match(node.value)
            and "." in node.value.split(":")[0]
            and _exists(node.value.split(":")[0])
        ):
            found.append((node.lineno, node.value.split(":")[0]))
    return found


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (parent packages not counted:
    importing ``a.b.c`` runs ``a/b/__init__`` first, which is what the package is for)."""
    modules = {_module_name(path): path for path in _python_files(package)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {target for _, target in _imports(path) if target in modules}
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
        # a submodule named through its package (`from a import b`) counts once, as `a.b`
        graph[name] -= {t for t in graph[name] if any(o.startswith(t + ".") for o in targets)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upward(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _python_files(package)
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert not violations, "\n".join(violations)


def test_drivers_reach_the_simulator_only_by_url() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _python_files("drivers")
        if "sim" not in path.relative_to(ROOT / "drivers").parts[:1]
        for line, name in _imports(path)
        if name == "drivers.sim" or name.startswith("drivers.sim.")
    ]
    assert not violations, "\n".join(violations)


def test_the_simulator_url_handler_is_declared_in_the_package_metadata() -> None:
    """How drivers find ``mockchip://`` without naming the simulator: an entry point."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    handlers = project["entry-points"]["chipctl.url_handlers"]
    assert (ROOT / Path(*handlers["mockchip"].split("."), "protocol_mockchip.py")).is_file()


def _is_front_end(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FRONT_ENDS)


def test_chipctl_library_never_imports_a_front_end() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _python_files("chipctl")
        if not _is_front_end(_module_name(path))
        for line, name in _imports(path)
        if _is_front_end(name)
    ]
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package: str) -> None:
    cycles = _cycles(_graph(package))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_procedures_name_no_chipctl_module_even_in_strings() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line} names {name}"
        for path in _python_files("procedures")
        for line, name in _imports(path)
        if name.startswith("chipctl")
    ]
    assert not violations, "\n".join(violations)


def test_the_rule_checker_sees_imports_and_module_strings() -> None:
    """Guard against a checker that finds nothing: the board driver imports the link, the
    catalog names procedure modules in strings, and a circle is a circle."""
    names = {name for _, name in _imports(ROOT / "drivers" / "board.py")}
    assert "drivers.link.transport" in names
    catalog_names = {name for _, name in _imports(ROOT / "chipctl" / "catalog.py")}
    assert {"procedures.program_verify", "chipctl.inference"} <= catalog_names
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
