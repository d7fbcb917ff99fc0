"""Settings read from the environment: the worker cache knob (the rest is covered where used)."""

from __future__ import annotations

import pytest

from mispers.config import ConfigError, load_settings


def test_worker_cache_defaults_to_a_memory_sized_800_and_takes_a_number() -> None:
    assert load_settings({}).worker_cache == 800
    assert load_settings({"MISPERS_WORKER_CACHE": "5000"}).worker_cache == 5000
    assert load_settings({"MISPERS_WORKER_CACHE": "0"}).worker_cache == 0


@pytest.mark.parametrize("raw", ["lots", "-1", "2000000"])
def test_a_bad_worker_cache_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="MISPERS_WORKER_CACHE"):
        load_settings({"MISPERS_WORKER_CACHE": raw})


def test_the_close_time_export_is_on_unless_switched_off() -> None:
    assert load_settings({}).analytics_export is True
    assert load_settings({"MISPERS_ANALYTICS_EXPORT": "off"}).analytics_export is False
    assert load_settings({"MISPERS_ANALYTICS_EXPORT": "ON"}).analytics_export is True
    with pytest.raises(ConfigError, match="MISPERS_ANALYTICS_EXPORT"):
        load_settings({"MISPERS_ANALYTICS_EXPORT": "no"})
