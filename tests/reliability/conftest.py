"""The forkserver the kill tests fork their ``chipctl`` commands from (one per session)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.forked import forkserver_context


@pytest.fixture(scope="session")
def forkserver() -> Any:
    return forkserver_context()
