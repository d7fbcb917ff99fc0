"""Independent jobs spread over every core: the synthetic year, the store's bulk load and the
policy simulation all cut their episodes into jobs that share nothing, so each job runs in a
process of its own (spawned, so no state leaks from the parent) and reports as it finishes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


def in_processes(
    run: Callable[[J], R], work: list[J], processes: int | None, on_done: Callable[[R], None]
) -> Iterator[R]:
    """Each job's result as it finishes (in any order). `run` must be a module-level function
    (it is pickled); one process, or one job, runs here without a pool."""
    processes = processes or os.cpu_count() or 1
    if processes == 1 or len(work) <= 1:
        for job in work:
            done = run(job)
            on_done(done)
            yield done
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        for done in pool.imap_unordered(run, work):
            on_done(done)
            yield done
