"""Fixtures of the unit tests: the hand-built label maps of :mod:`unit_maps`, made once per session."""

from __future__ import annotations

import pytest
from unit_maps import build_canal_line, build_mini_sacrum

from trajplan.volume import Volume


@pytest.fixture(scope="session")
def mini_sacrum() -> Volume:
    """The mini sacrum with a left fracture (read-only: tests that change it work on a copy)."""
    labels = build_mini_sacrum()
    labels.array.flags.writeable = False
    return labels


@pytest.fixture(scope="session")
def canal_line() -> Volume:
    """:func:`build_canal_line` (read-only)."""
    labels = build_canal_line()
    labels.array.flags.writeable = False
    return labels
