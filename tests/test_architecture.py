"""The layer rules of DESIGN.md, made executable.

chipctl -> procedures -> drivers, never upward; drivers and procedures never import h5py or
textual; driver code outside drivers/sim never imports the simulator (it is reached by URL).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "drivers": {"chipctl", "procedures", "h5py", "textual", "rich"},
    "procedures": {"chipctl", "h5py", "textual", "rich"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
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
    return found


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


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


def test_the_rule_checker_sees_imports() -> None:
    """Guard against a checker that finds nothing: the board driver does import the link."""
    names = {name for _, name in _imports(ROOT / "drivers" / "board.py")}
    assert "drivers.link.transport" in names
