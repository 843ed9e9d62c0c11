"""Fewer garbage-collector passes during bulk work (ingest, builder runs).

CPython runs its cyclic collector every 700 net container allocations, and every hundredth such
pass walks every object the process holds. Ingest and builders allocate millions of small dicts and
lists (a structure document holds one per site), so the collector walked the whole heap about twenty
times in an ingest of the shipped data: ~4.5 s of a 35 s run, spent finding almost nothing, since
what these loops allocate is freed by reference counting. ``fewer_gc_passes`` raises the thresholds
for the duration of the block and restores them after; cycles are still collected, just in larger
batches. Nested and concurrent uses share one switch.

``PEROVDB_BULK_GC_THRESHOLD=0`` leaves Python's collector settings alone.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from perovdb.config import get_settings
from perovdb.switches import SharedSwitch

#: passes of the younger generations between two passes of the next older one, during bulk work
OLDER_GENERATION_RATIOS = (20, 100)

_switch = SharedSwitch()


@contextmanager
def fewer_gc_passes(threshold: int | None = None) -> Iterator[None]:
    """Within the block, the collector runs after ``threshold`` net allocations (default: the setting).

    Nested and concurrent blocks share the thresholds the first of them set."""
    threshold = get_settings().bulk_gc_threshold if threshold is None else threshold
    if threshold <= 0:
        yield
        return

    def raise_thresholds() -> Callable[[], None]:
        saved = gc.get_threshold()
        if saved[0] and threshold > saved[0]:  # a threshold of 0 (automatic collection off) stays off
            gc.set_threshold(threshold, *OLDER_GENERATION_RATIOS)
        return lambda: gc.set_threshold(*saved)

    with _switch.held(raise_thresholds):
        yield
