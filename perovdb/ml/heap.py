"""Keep freed memory in the process heap while a model trains or predicts (glibc).

An ALIGNN step allocates and frees dozens of per-edge tensors of ~150 MB. glibc serves every
allocation above 32 MB (its largest mmap threshold) with a fresh ``mmap`` and returns it with ``munmap``
on free, so each such tensor is page-faulted and zeroed by the kernel again, every step: measured on a
batch of 16 perovskites, that is most of an inference pass and a third of a training step (a fresh
146 MB tensor costs ~200 ms, writing into a reused one ~30 ms). ``retained_heap`` switches glibc to
serve large blocks from the heap and not to trim it (``mallopt``), so freed blocks are reused without
page faults, and on exit restores glibc's defaults and returns free memory to the system
(``malloc_trim``). Numbers computed are unchanged. Nested and concurrent uses share one switch.

Set ``PEROVDB_RETAIN_HEAP=0`` to leave the allocator alone; off glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from perovdb.config import get_settings
from perovdb.switches import SharedSwitch

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: glibc's defaults, restored on exit
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536

_switch = SharedSwitch()
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        try:
            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has mallopt as a no-op stub)
                _libc = libc
        except (OSError, AttributeError):
            _libc = None
    return _libc  # type: ignore[return-value]


def enabled() -> bool:
    """Whether ``retained_heap`` changes the allocator here (glibc, and the ``retain_heap`` setting on)."""
    return get_settings().retain_heap and _glibc() is not None


@contextmanager
def retained_heap() -> Iterator[None]:
    """Within the block, freed memory stays in the heap for reuse (see the module docstring)."""
    libc = _glibc() if enabled() else None
    if libc is None:
        yield
        return

    def retain() -> Callable[[], None]:
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)

        def release() -> None:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)

        return release

    with _switch.held(retain):
        yield
