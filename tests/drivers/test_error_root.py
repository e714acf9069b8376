"""Every exception class defined in ``drivers`` and ``procedures`` derives from the one root,
``drivers.errors.DriverError`` (DESIGN.md "Board replies ... one root"; issue 14 part 7).

The test imports every module of both packages and inspects the classes each one defines.
Private classes (a leading underscore) are internal signals that never leave their module
(``_Refused`` in the simulated board, ``_NoReply`` in the transport) and are not checked.
"""

from __future__ import annotations

import pytest

from drivers.errors import DriverError
from tests.exception_walk import defined_exceptions

PACKAGES = ("drivers", "procedures")


CLASSES = defined_exceptions(*PACKAGES)


def test_the_walk_finds_the_exception_classes() -> None:
    """Guard against a walk that finds nothing."""
    for name in (
        "drivers.errors.LimitError",
        "drivers.link.protocol.CodecError",
        "drivers.link.payloads.PayloadError",
        "drivers.instruments._scpi.InstrumentError",
        "procedures.base.Aborted",
    ):
        assert name in CLASSES


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_exception_derives_from_driver_error(name: str) -> None:
    cls = CLASSES[name]
    assert issubclass(cls, DriverError), f"{name} does not derive from drivers.errors.DriverError"
