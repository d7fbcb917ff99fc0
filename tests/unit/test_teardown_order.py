"""Teardown terminates episodes before the child records they write to: a child record ended
first is started again by its episode's next sync, and that new run holds the time-skipping
server's clock once the test's worker has gone."""

from tests.harness import sources_first


def test_episodes_are_terminated_before_child_records_each_once_in_order() -> None:
    started = ["episode-E-1", "child-C-1", "episode-E-2", "child-C-1", "child-C-2", "episode-E-1"]
    assert sources_first(started) == ["episode-E-1", "episode-E-2", "child-C-1", "child-C-2"]
