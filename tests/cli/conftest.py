"""Fixtures of the ``keyledger`` command's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.keyledger_process import private_dir


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory of the test's own for ``keyledger run`` (see `private_dir`)."""
    with private_dir() as path:
        yield path
