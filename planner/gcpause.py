"""Pausing Python's cyclic garbage collector around a phase that allocates millions of objects.

A full collection walks every live object, and CPython starts one each time enough new objects
survive: building ~10⁶ rows (a fleet instance's performance entries, its option table) or
replaying millions of requests triggers such walks over an ever larger heap. None of these phases
makes reference cycles worth collecting mid-way, so the collector is paused for the phase and
resumed (as it was) after it; cycles made meanwhile are collected later. That defers one full
collection rather than the several during the phase: on fleet-200×40×40 seeds 0-2, load + option
table + the heuristics' arrays 21.7 / 14.9 / 16.2 s → 16.1 / 11.3 / 12.9 s, loading alone 6.6 →
3.3 s median (``benchmarks/results/build_phases.md``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector off for the block (or the decorated call), then as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_heap() -> None:
    """Every object alive now moved out of the cyclic collector's sight (``gc.freeze``), for a
    process that has built what it keeps for the rest of its run (the instance, the option table).

    The paused build phases leave their millions of objects young, so the first allocations after
    them (the solver's own arrays) pay for walks over the whole heap: on fleet-200×40×40 seed 0
    (4.2·10⁶ tracked objects) the heuristics' arrays took 2.9 s instead of 0.24 s, over half of a
    5-s limit. Frozen objects are still freed by reference counting; only reference cycles among
    them that die later are never collected, so this is for processes that own their run (the
    CLI's commands, the benchmarks), not for a library call inside someone else's."""
    gc.freeze()
