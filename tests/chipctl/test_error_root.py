"""Every exception class chipctl defines derives from ``chipctl.errors.ChipctlError`` (issue 14
part 7), so ``except ChipctlError`` catches whatever chipctl itself raises."""

from __future__ import annotations

import pytest

from chipctl.errors import ChipctlError
from tests.exception_walk import defined_exceptions

CLASSES = defined_exceptions("chipctl")


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
