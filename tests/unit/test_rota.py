"""The rota: who is on duty for a rank at a moment, on the Europe/London wall clock."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from mispers.domain.types import Rank
from mispers.rota import RotaError, RotaFile, on_duty, parse_rota

ROTA = """rank,person_id,email,days,start,end
sergeant,SGT-DAY,day@force.test,Mon-Fri,08:00,16:00
sergeant,SGT-NIGHT,night@force.test,*,22:00,06:00
inspector,INSP-WE,we@force.test,"Sat,Sun",00:00,00:00
"""


def utc(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def who(rank: Rank, moment: dt.datetime) -> str | None:
    found = on_duty(parse_rota(ROTA), rank, moment)
    return found.person_id if found else None


def test_day_shift_keeps_its_local_hours_across_the_spring_clock_change() -> None:
    # Clocks go forward on Sunday 29 March 2026: 07:30 UTC is 07:30 on Friday, 08:30 on Monday.
    assert who(Rank.SERGEANT, utc(2026, 3, 27, 7, 30)) is None
    assert who(Rank.SERGEANT, utc(2026, 3, 30, 7, 30)) == "SGT-DAY"
    # 15:30 UTC is 15:30 GMT (on duty) before, 16:30 BST (off duty) after.
    assert who(Rank.SERGEANT, utc(2026, 3, 27, 15, 30)) == "SGT-DAY"
    assert who(Rank.SERGEANT, utc(2026, 3, 30, 15, 30)) is None


def test_night_shift_runs_past_midnight_and_the_autumn_change() -> None:
    # Clocks go back on Sunday 25 October 2026 at 02:00 BST: the night shift that began at
    # 22:00 BST on Saturday (21:00 UTC) ends at 06:00 GMT (06:00 UTC), nine hours later.
    assert who(Rank.SERGEANT, utc(2026, 10, 24, 20, 59)) is None
    assert who(Rank.SERGEANT, utc(2026, 10, 24, 21, 0)) == "SGT-NIGHT"
    assert who(Rank.SERGEANT, utc(2026, 10, 25, 5, 59)) == "SGT-NIGHT"
    assert who(Rank.SERGEANT, utc(2026, 10, 25, 6, 0)) is None
    # In winter the same shift begins at 22:00 UTC.
    assert who(Rank.SERGEANT, utc(2026, 11, 2, 21, 30)) is None
    assert who(Rank.SERGEANT, utc(2026, 11, 2, 22, 30)) == "SGT-NIGHT"


def test_weekend_days_and_all_day_shifts() -> None:
    assert who(Rank.INSPECTOR, utc(2026, 11, 28, 12, 0)) == "INSP-WE"  # Saturday
    assert who(Rank.INSPECTOR, utc(2026, 11, 29, 23, 59)) == "INSP-WE"  # Sunday, 23:59 GMT
    assert who(Rank.INSPECTOR, utc(2026, 11, 30, 0, 1)) is None  # Monday
    assert who(Rank.SUPERINTENDENT, utc(2026, 11, 28, 12, 0)) is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("constable,P-1,a@b.test,*,08:00,16:00", "line 2: rank 'constable'"),
        ("sergeant,P-1,not-an-address,*,08:00,16:00", "line 2: email"),
        ("sergeant,P-1,a@b.test,Mon-Fry,08:00,16:00", "line 2: days 'Mon-Fry'"),
        ("sergeant,P-1,a@b.test,*,8am,16:00", "line 2: start '8am'"),
        ("sergeant,P-1,a@b.test,*,08:00,24:00", "line 2: end '24:00'"),
        ("sergeant,P-1,a@b.test,*,08:00", "line 2: 5 fields"),
    ],
)
def test_a_malformed_rota_is_refused_with_its_line_and_reason(row: str, reason: str) -> None:
    with pytest.raises(RotaError) as refused:
        parse_rota(f"rank,person_id,email,days,start,end\n{row}\n", "rota.csv")
    assert str(refused.value).startswith(f"rota.csv: {reason}")


def test_reloaded_when_changed_and_last_good_copy_kept(tmp_path: Path) -> None:
    path = tmp_path / "rota.csv"
    path.write_text(ROTA)
    rota = RotaFile(path)
    saturday = utc(2026, 11, 28, 12, 0)
    assert rota.on_duty(Rank.INSPECTOR, saturday) is not None
    path.write_text(ROTA.replace("INSP-WE", "INSP-NEW"))
    os.utime(path, ns=(1, 1))
    found = rota.on_duty(Rank.INSPECTOR, saturday)
    assert found is not None and found.person_id == "INSP-NEW"
    path.write_text("rank,person_id,email,days,start,end\nsergeant,bad id!,x,*,1,2\n")
    os.utime(path, ns=(2, 2))
    kept = rota.on_duty(Rank.INSPECTOR, saturday)
    assert kept is not None and kept.person_id == "INSP-NEW"
    with pytest.raises(RotaError):
        RotaFile(path)  # at start, a malformed rota stops the worker


def test_the_worker_refuses_a_malformed_rota_with_its_line_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from mispers.cli import app

    path = tmp_path / "rota.csv"
    path.write_text("rank,person_id,email,days,start,end\nsergeant,P-1,a@b.test,*,08:00\n")
    monkeypatch.setenv("MISPERS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MISPERS_ROTA", str(path))
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2
    assert f"{path}: line 2: 5 fields, expected 6" in result.output
