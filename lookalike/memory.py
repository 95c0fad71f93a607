"""Bounding the memory image decoding takes, and handing it back afterwards.

A decoded picture costs a few bytes per pixel whatever its file size, so a 200 KB PNG can need
300 MB. Threads that fingerprint at once (the site's) share a :class:`MemoryBudget`, and after a
large decode the freed pages go back to the kernel, which glibc does not do by itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


class MemoryBudget:
    """A semaphore counted in bytes: a decode waits until the memory it will take is free.

    A decode larger than the whole budget waits for all of it and then runs alone.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise ValueError("a memory budget needs at least one byte")
        self.capacity_bytes = capacity_bytes
        self._free = capacity_bytes
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        taken = min(max(nbytes, 0), self.capacity_bytes)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= taken)
            self._free -= taken
        try:
            yield
        finally:
            with self._changed:
                self._free += taken
                self._changed.notify_all()


def return_freed_memory() -> None:
    """Ask glibc to give freed heap pages back to the kernel (``malloc_trim``).

    glibc keeps memory freed inside its arenas, one per thread, for reuse: eight 49 MP decodes
    on eight threads left 49 MB more resident without this. Elsewhere a no-op.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
