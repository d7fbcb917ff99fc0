"""The worker bounds glibc's malloc arenas before its threads start (mispers/malloc.py): the
bound must be taken by the C library, or the worker's memory figures rest on nothing."""

from __future__ import annotations

import platform

import pytest

from mispers.malloc import limit_arenas

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="the bound is glibc's")
def test_glibc_takes_the_bound() -> None:
    assert limit_arenas() is True
