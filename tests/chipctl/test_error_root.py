"""Every exception class chipctl defines derives from ``chipctl.errors.ChipctlError`` (issue 14
part 7), so ``except ChipctlError`` catches whatever chipctl itself raises."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import chipctl
from chipctl.errors import ChipctlError


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    names = [info.name for info in pkgutil.walk_packages(chipctl.__path__, prefix="chipctl.")]
    for module_name in ["chipctl", *names]:
        if module_name.endswith("__main__"):
            continue  # running it is running the command
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{module.__name__}.{obj.__qualname__}"] = obj
    return found


CLASSES = _exception_classes()


def test_the_walk_finds_the_exception_classes() -> None:
    for name in (
        "chipctl.catalog.CatalogError",
        "chipctl.runfile.format.RunFileError",
        "chipctl.resume.ResumeError",
        "chipctl.recipe.RecipeError",
        "chipctl.station.file.StationFileError",
    ):
        assert name in CLASSES


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_exception_derives_from_chipctl_error(name: str) -> None:
    assert issubclass(CLASSES[name], ChipctlError), f"{name} does not derive from ChipctlError"
