"""Keeps the benchmark scripts from rotting: the history bench end to end with tiny numbers on
the time-skipping server, and the argument parsing and percentile helper of the others. The
figures themselves are measured by running the benches (bench/README.md), never here."""

from __future__ import annotations

import math

import pytest

from bench import alerts, history, ingest
from bench.common import percentile

pytestmark = pytest.mark.integration


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(range(101)), 95) == 95


def test_bench_commands_parse_their_flags() -> None:
    assert ingest.parse_args(["--episodes", "2", "--runs", "1"]).episodes == 2
    assert alerts.parse_args([]).episodes == 10_000
    with pytest.raises(SystemExit):
        history.parse_args(["--runs", "0"])
    assert ingest.parse_args(["--export-cost"]).export_cost
    with pytest.raises(SystemExit):  # closing needs the child found (the 6th event)
        ingest.parse_args(["--close", "--events-per-episode", "5"])


def test_history_bench_runs_with_tiny_numbers() -> None:
    payload = history.main(["--runs", "1", "--child-episodes", "2", "--no-json"])
    run = payload["runs"][0]
    assert run["episode"]["inputs"] == 30
    assert run["episode"]["status"] == "closed"
    assert run["child_record"]["episodes_in_record"] == 2
    assert {f["name"].split(",")[0] for f in payload["figures"]} >= {"7-day episode"}


def test_report_bench_runs_with_tiny_numbers() -> None:
    from bench import report

    payload = report.main(
        ["--episodes", "150", "--processes", "1", "--no-pdf", "--no-json", "--export-records", "5"]
    )
    result = payload["result"]
    assert result["episodes"] == result["report_episodes"] == result["rows"]["episodes"] == 150
    assert result["rows"]["obligations"] > 150
    names = {f["name"].split(" (")[0] for f in payload["figures"]}
    assert {"national year into the store", "year's figures and HTML"} <= names


def test_alert_bench_measures_a_raw_peer_on_the_same_waves() -> None:
    """A handful of episodes at a time scale that brings their first deadlines within seconds:
    the peer's trivial workflows owe and deliver the same alerts, and the ratio is computed."""
    payload = alerts.main(
        [
            *("--episodes", "6", "--time-scale", "600", "--ramp-rate", "0"),
            *("--observe", "3", "--reads", "3", "--sample", "6", "--grace", "60"),
            *("--runs", "1", "--no-json"),
        ]
    )
    run = payload["runs"][0]
    assert run["alerts_expected"] > 0 and run["alerts_lost"] == 0
    assert run["raw_alerts_expected"] == run["alerts_expected"]
    assert run["raw_alerts_lost"] == 0
    assert run["lateness_p99_over_raw"] > 0
    # lateness split at the task that raised the alert, for Mispers and the peer alike
    assert run["sent_lag_p99"] > 0 and run["raw_sent_lag_p99"] > 0
    assert math.isfinite(run["raise_lag_p99"]) and math.isfinite(run["raw_raise_lag_p99"])
    assert run["query_state_p95"] > 0 and run["reads_failed"] == 0
    names = {f["name"] for f in payload["figures"]}
    assert "alert lateness p99 Mispers / p99 raw peer" in names
    # the timeline sampled the whole run: it saw every episode open and every process's RSS
    samples = run["timeline"]
    assert samples[-1]["open"] == run["episodes"] == 6
    assert samples[-1]["worker_cpu_s"] > samples[0]["worker_cpu_s"]
    assert run["peak_worker_rss_mib_whole_run"] >= run["worker_rss_mib"] > 0


def test_cachemem_bench_measures_new_and_escalated_episodes() -> None:
    """Three episodes measured new, then after each has raised an alert (a 1-hour deadline
    falling in 6 s): the bench reaches the escalated reading, which needs every alert."""
    from bench import cachemem

    figures = cachemem.main(
        ["--episodes", "3", "--warm", "1", "--alerts", "1", "--time-scale", "600"]
    )
    assert figures["rss_base_mib"] > 0
    assert {"kib_per_new_episode", "kib_per_escalated_episode"} <= set(figures)


def test_pages_bench_stops_its_ramp_at_the_time_limit_and_measures_what_is_open() -> None:
    """A ramp limited to a few milliseconds stops after its first batch: the pages are timed at
    the ten episodes open, with each process's memory and share of a core."""
    from bench import pages

    result = pages.main(
        [
            *("--episodes", "30", "--batch", "10", "--ramp-minutes", "0.0001"),
            *("--reads", "2", "--no-json"),
        ]
    )
    assert (result["episodes"], result["episodes_offered"]) == (10, 30)
    assert (
        set(result["rss_mib"])
        == set(result["cpu_share_during_ramp"])
        == {
            "worker",
            "server",
            "api",
        }
    )
    assert all(mib > 0 for mib in result["rss_mib"].values())
    assert result["list_p95"] > 0 and result["episode_p95"] > 0


def test_replay_bench_replays_every_recorded_history() -> None:
    from bench import replay

    payload = replay.main(["--rounds", "1", "--no-json"])
    stems = {p.stem for p in replay.CORPUS.glob("*.json")}
    assert set(payload["histories"]) == stems
    assert all(len(h["seconds"]) == 1 and h["events"] > 0 for h in payload["histories"].values())
    assert payload["figures"][0]["value"] > 0
