"""`mispers synth --into-analytics` then `mispers report`, as a person runs them: a synthetic
year through the offline driver into Parquet (MISPERS_ANALYTICS), and the year's report in
HTML, PDF and JSON from it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import run_command

pytestmark = pytest.mark.timeout(240)
MISPERS = (sys.executable, "-m", "mispers")


async def report(start: str, end: str, out: Path | str, env: dict[str, str]) -> tuple[int, str]:
    """`mispers report` over a period, as a person types it."""
    return await run_command(
        *MISPERS, "report", "--from", start, "--to", end, "--out", str(out), env=env
    )


async def test_a_synthetic_year_into_the_store_and_its_report(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MISPERS_DATA_DIR": str(tmp_path / "data"),
        "MISPERS_ANALYTICS": str(tmp_path / "analytics"),
    }
    env.pop("MISPERS_LOCATIONS_OF_CONCERN", None)
    code, output = await run_command(
        *MISPERS,
        "synth",
        "--episodes",
        "400",
        "--days",
        "365",
        "--seed",
        "5",
        "--start",
        "2026-01-01",
        "--into-analytics",
        "--out",
        str(tmp_path / "year.ndjson"),
        env=env,
    )
    assert code == 0, output
    assert "400 episode records" in output
    months = sorted(p.name for p in (tmp_path / "analytics" / "episodes").iterdir())
    assert months[0] == "month=2026-01" and len(months) == 12
    lines = (tmp_path / "year.ndjson").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["specversion"] == "1.0" and first["type"] == "mispers.episode.reported"
    times = [json.loads(line)["time"] for line in lines]
    assert times == sorted(times)
    for suffix in ("json", "html", "pdf"):
        out = tmp_path / f"report.{suffix}"
        code, output = await report("2026-01-01", "2026-12-31", out, env)
        assert code == 0, output
        assert out.stat().st_size > 1000
    doc = json.loads((tmp_path / "report.json").read_text())
    reported = sum(1 for line in lines if '"mispers.episode.reported"' in line)
    assert doc["episodes"] == reported == 400
    assert doc["obligations"]["systems_checks"]["due"] == 400
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    code, output = await report("2026-12-31", "2026-01-01", "r.html", env)
    assert code == 2 and "--to is before --from" in output


async def test_synth_and_report_refuse_what_cannot_be_done(tmp_path: Path) -> None:
    env = {**os.environ, "MISPERS_DATA_DIR": str(tmp_path / "data")}
    code, output = await run_command(*MISPERS, "synth", "--episodes", "5", "--days", "3", env=env)
    assert code == 2 and "--out FILE.ndjson and/or --into-analytics" in output
    code, output = await report("2026-01-01", "2026-12-31", "r.docx", env)
    assert code == 2 and "written as .html, .pdf or .json" in output
    code, output = await report("1st May", "2026-12-31", "r.json", env)
    assert code == 2 and "--from '1st May': must be a date" in output
    out = tmp_path / "empty.json"
    code, output = await report("2026-01-01", "2026-12-31", out, env)
    assert code == 0, output  # no store yet: a report of nothing, not a traceback
    assert json.loads(out.read_text())["episodes"] == 0
