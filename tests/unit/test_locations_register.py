"""The locations-of-concern register follows its file: a change is picked up at the next lookup,
and a file broken while running is reported and the last good copy kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.locations import LocationsRegister
from mispers.domain.locations import RegisterError

HEADER = "postcode,category,reference\n"


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    stat = path.stat()
    # A rewrite within the same clock tick must still count as a change.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump))


def test_a_changed_file_is_reloaded_and_a_broken_one_ignored(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    write(path, HEADER + "N1 9GU,registered_sex_offender,RSO-7\n", 0)
    register = LocationsRegister(path)
    assert [e.reference for e in register.lookup("N19GU")] == ["RSO-7"]
    assert register.lookup("E16AN") == []

    write(path, HEADER + "e1 6an,exploitation,EX-2\n", 1_000_000)
    assert [e.reference for e in register.lookup("E16AN")] == ["EX-2"]
    assert register.lookup("N19GU") == []

    write(path, HEADER + "E1 6AN,not-a-category,EX-3\n", 2_000_000)
    assert [e.reference for e in register.lookup("E16AN")] == ["EX-2"]  # last good copy


def test_a_broken_file_stops_the_worker_at_start_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    path.write_text(HEADER + "N1 9GU,registered_sex_offender,RSO-7\nE1 6AN,unknown,X\n")
    with pytest.raises(RegisterError, match=r"register.csv.*line 3"):
        LocationsRegister(path)
