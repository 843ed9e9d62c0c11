"""Worker processes for CPU-bound work on many independent records (graph building, ingest parsing)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def resolve_workers(workers: int | None, configured: int = 0) -> int:
    """Processes to use: ``workers`` when positive, else ``configured`` (``Settings.num_workers``), where
    0 means one per available core."""
    if workers is not None and workers > 0:
        return workers
    if configured > 0:
        return configured
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (containers, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_pool(workers: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked where the platform can (workers inherit the imported
    modules instead of importing pymatgen or torch again)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method), initializer=initializer)
