"""Keeps bench/simulate.py from rotting: tiny numbers, one process. Its figures are measured by
running the bench (bench/README.md), never here."""

from __future__ import annotations

import pytest

from bench import simulate

pytestmark = pytest.mark.timeout(240)


def test_simulation_bench_runs_with_tiny_numbers() -> None:
    payload = simulate.main(
        ["--episodes", "40", "--raw-sample", "10", "--processes", "1", "--no-json"]
    )
    assert payload["simulation"]["episodes"] == 40
    assert payload["simulation"]["events"] > 40 and payload["raw"]["events"] > 0
    names = [f["name"] for f in payload["figures"]]
    assert any("extrapolated from 40 episodes" in n for n in names)
    assert payload["national_seconds"] > 0
