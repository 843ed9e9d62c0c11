"""Process-wide settings held for a block: the allocator, the garbage collector, torch's thread count."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SharedSwitch:
    """Switched on by the first block that enters, back off by the last one out: nested and concurrent
    blocks (threads) share one switch, so an inner block never restores what an outer one still needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._switch_back: Callable[[], None] | None = None

    @contextmanager
    def held(self, switch_on: Callable[[], Callable[[], None]]) -> Iterator[None]:
        """Within the block the switch is on; ``switch_on`` turns it on and returns how to turn it back."""
        with self._lock:
            if self._users == 0:
                self._switch_back = switch_on()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._switch_back is not None:
                    switch_back, self._switch_back = self._switch_back, None
                    switch_back()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch on ``count`` threads within the block (None or 0: as it is), then restore the previous count.

    One thread suits small tensors (graph building: the hand-off costs more than it saves). Nested blocks
    restore in order; torch has one count per process, so blocks in concurrent threads share it."""
    import torch  # here: ingest and the API import this module and need no torch

    if not count:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
