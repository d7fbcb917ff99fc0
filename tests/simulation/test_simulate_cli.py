"""`mispers simulate` as a person runs it: a synthetic period written by `mispers synth` (to a
file and into the store), simulated under the shipped policy and the example candidate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import repo_root

pytestmark = pytest.mark.timeout(300)
EXAMPLE = repo_root() / "docs" / "examples" / "candidate-policy.toml"
SHIPPED = repo_root() / "mispers" / "policy" / "default.toml"


def mispers(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mispers", *args],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def period(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """300 episodes over 30 days, as a CloudEvents file and as records in a Parquet store."""
    root = tmp_path_factory.mktemp("simulate")
    env = {
        **os.environ,
        "MISPERS_DATA_DIR": str(root / "data"),
        "MISPERS_ANALYTICS": str(root / "analytics"),
    }
    for name in ("MISPERS_LOCATIONS_OF_CONCERN", "MISPERS_POLICY"):
        env.pop(name, None)
    done = mispers(
        "synth", "--episodes", "300", "--days", "30", "--seed", "11", "--start", "2026-03-01",
        "--out", str(root / "period.ndjson"), "--into-analytics", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root, env


def simulate(period: tuple[Path, dict[str, str]], *args: str) -> tuple[int, str, Any]:
    root, env = period
    out = root / "result.json"
    out.unlink(missing_ok=True)
    done = mispers("simulate", "--out", str(out), *args, env=env)
    result = json.loads(out.read_text()) if out.exists() else None
    return done.returncode, done.stdout + done.stderr, result


def test_the_example_candidate_differs_and_its_html_stands_alone(
    period: tuple[Path, dict[str, str]],
) -> None:
    root, _ = period
    code, output, result = simulate(
        period, "--policy", str(EXAMPLE), "--source", str(root / "period.ndjson")
    )
    assert code == 0, output
    base, cand = result["baseline"], result["candidate"]
    assert result["episodes"] == 300 and result["weaker_than_national"] == []
    # halving the interval escalates sooner: more alerts to sergeants and above
    assert cand["alerts_total"] > base["alerts_total"]
    assert cand["alerts_by_rank"]["inspector"] > base["alerts_by_rank"]["inspector"]
    # a 2-hour notification is missed more often than a 4-hour one, on the same events
    kind = "social_services_notified_missing"
    assert cand["overdue_by_kind"][kind] > base["overdue_by_kind"][kind]
    assert result["changed_most"] and result["episodes_changed"] >= len(result["changed_most"])
    assert "as they happened" in result["caveat"]
    html_out = root / "result.html"
    done = mispers(
        "simulate", "--policy", str(EXAMPLE), "--source", str(root / "period.ndjson"),
        "--out", str(html_out), env=period[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = html_out.read_text()
    assert page.count("<svg") >= 2 and "as they happened" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_the_baseline_against_itself_changes_nothing(period: tuple[Path, dict[str, str]]) -> None:
    root, _ = period
    code, output, result = simulate(
        period, "--policy", str(SHIPPED), "--source", str(root / "period.ndjson")
    )
    assert code == 0, output
    assert result["baseline"] == result["candidate"]
    assert result["episodes_changed"] == 0 and result["changed_most"] == []
    # every synthetic event was accepted when it was made: none is refused on replay
    assert result["baseline"]["refused_events_by_reason"] == {}


def test_the_store_holds_enough_to_simulate_as_the_file_does(
    period: tuple[Path, dict[str, str]],
) -> None:
    """The store keeps each episode's events without personal data; simulating from it gives
    the figures the CloudEvents file gives."""
    root, _ = period
    _, _, from_file = simulate(
        period, "--policy", str(EXAMPLE), "--source", str(root / "period.ndjson")
    )
    code, output, from_store = simulate(period, "--policy", str(EXAMPLE), "--source", "analytics")
    assert code == 0, output
    for side in ("baseline", "candidate"):
        assert from_store[side] == from_file[side], side
    assert from_store["changed_most"] == from_file["changed_most"]
    # and it holds no postcode, free text or date of birth
    events = [json.loads(line) for line in (root / "period.ndjson").read_text().splitlines()]
    con = duckdb.connect()
    pattern = root / "analytics" / "episodes" / "*" / "*.parquet"
    stored = " ".join(r[0] for r in con.execute(f"SELECT stream FROM '{pattern}'").fetchall())
    postcodes = {
        "".join(e["data"][k]["postcode"].split()).upper()
        for e in events
        for k in ("location", "last_seen_location")
        if isinstance(e["data"].get(k), dict) and e["data"][k].get("postcode")
    }
    assert postcodes and not [p for p in postcodes if p in stored.replace(" ", "").upper()]
    for text in ("reviewed with the information held", "duty team", "all steps done"):
        assert text in json.dumps(events) and text not in stored
    births = [
        e["data"]["child"]["date_of_birth"]
        for e in events
        if e["type"] == "mispers.episode.reported"
    ]
    assert sum(1 for b in births if b in stored) < len(births) / 10


def test_a_candidate_weaker_than_a_national_rule_is_refused_unless_allowed(
    period: tuple[Path, dict[str, str]],
) -> None:
    root, _ = period
    weak = root / "weak.toml"
    text = SHIPPED.read_text()
    weak.write_text(
        re.sub(
            r'(\[obligations.return_interview\][^\n]*\nowner = "officer"\n)due = "72h"',
            r'\1due = { high = "72h", medium = "96h", low = "96h", very_low = "96h" }',
            text.replace('child_min_level = "medium"', 'child_min_level = "low"'),
        )
    )
    source = ("--source", str(root / "period.ndjson"))
    code, output, result = simulate(period, "--policy", str(weak), *source)
    assert code == 2 and result is None
    assert "risk.child_min_level" in output and "obligations.return_interview.due" in output
    assert "--allow-weaker-than-national" in output
    code, output, result = simulate(
        period, "--policy", str(weak), *source, "--allow-weaker-than-national"
    )
    assert code == 0, output
    fields = {w["field"] for w in result["weaker_than_national"]}
    assert "risk.child_min_level" in fields
    assert "obligations.return_interview.due.medium" in fields


def test_a_malformed_candidate_is_refused_with_file_field_and_rule(
    period: tuple[Path, dict[str, str]],
) -> None:
    root, _ = period
    bad = root / "bad.toml"
    bad.write_text(SHIPPED.read_text().replace('high = "30m"', 'high = "soon"', 1))
    code, output, result = simulate(
        period, "--policy", str(bad), "--source", str(root / "period.ndjson")
    )
    assert code == 2 and result is None
    flat = " ".join(output.split())
    assert "bad.toml" in flat and "escalation_interval.high" in flat and "not a duration" in flat


def test_the_committed_example_comparison_shows_the_difference_it_claims() -> None:
    """docs/examples/simulation.{json,html}: the contract's shape, a meaningful difference, the
    same figures in both, small enough to commit (the run above proves it still renders)."""
    folder = repo_root() / "docs" / "examples"
    result = json.loads((folder / "simulation.json").read_text())
    page = (folder / "simulation.html").read_text()
    assert (folder / "simulation.html").stat().st_size < 1_000_000
    assert result["weaker_than_national"] == []
    base, cand = result["baseline"], result["candidate"]
    for side in (base, cand):
        assert set(side["alerts_by_rank"]) <= {"sergeant", "inspector", "superintendent"}
        assert side["alerts_total"] == sum(side["alerts_by_rank"].values())
        assert side["overdue_total"] == sum(side["overdue_by_kind"].values())
        assert f"{side['alerts_total']:,}" in page
    assert cand["alerts_total"] > 1.5 * base["alerts_total"]
    kind = "social_services_notified_missing"
    assert cand["overdue_by_kind"][kind] > base["overdue_by_kind"][kind]
    assert "candidate-policy.toml" in result["policies"]["candidate"]
    assert page.count("<svg") >= 2 and "as they happened" in page


def test_a_period_and_another_baseline(period: tuple[Path, dict[str, str]]) -> None:
    root, _ = period
    events = [json.loads(line) for line in (root / "period.ndjson").read_text().splitlines()]
    reported = [e["time"][:10] for e in events if e["type"] == "mispers.episode.reported"]
    expected = sum(1 for day in reported if "2026-03-01" <= day <= "2026-03-10")
    code, output, result = simulate(
        period, "--policy", str(SHIPPED), "--baseline", str(EXAMPLE),
        "--from", "2026-03-01", "--to", "2026-03-10", "--source", str(root / "period.ndjson"),
    )  # fmt: skip
    assert code == 0, output
    assert 0 < result["episodes"] == expected < 300
    assert result["period"] == {"from": "2026-03-01", "to": "2026-03-10", "days": 10}
    assert "candidate-policy.toml" in result["policies"]["baseline"]
    # the shipped policy, as the candidate against the example, escalates less
    assert result["candidate"]["alerts_total"] < result["baseline"]["alerts_total"]
