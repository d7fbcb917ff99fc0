"""A bound on glibc's malloc arenas for the worker process.

glibc gives a thread that allocates while another holds the main arena an arena of its own, up
to eight per core, and memory freed into one arena serves only that arena's threads. The
worker's workflow tasks run on a pool of threads, so during an alert wave (hundreds of wakes,
most of them replays) each thread's arena grows to its own high-water mark, and the process
keeps them all. Two arenas hold the wave's peak closer to what is live; the worker's Python
code holds the GIL to allocate anyway, so it loses no parallelism it had."""

from __future__ import annotations

import ctypes
import ctypes.util

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int = ARENAS) -> bool:
    """True when the C library took the bound (glibc); another libc is left as it is."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
