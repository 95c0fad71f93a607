"""Fingerprinting in worker processes, so decoding runs beside the reactor, not behind its GIL.

Threads already overlap Pillow's C code, but the hashes' Python parts and the reactor share
one GIL; on two cores that capped a crawl well below what the CPUs can do. Workers are
spawned (not forked from a process with threads) and, on Linux, die with the crawler
even on kill -9.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

from lookalike.fingerprint import Fingerprint, ImageRejected, fingerprint

_PR_SET_PDEATHSIG = 1


def start_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def fingerprint_or_reason(data: bytes, max_pixels: int, thumbnail: bool) -> Fingerprint | str:
    """The core's fingerprint, or the one-line reason the bytes are not an image."""
    try:
        return fingerprint(data, max_pixels=max_pixels, with_thumbnail=thumbnail)
    except ImageRejected as error:
        return str(error)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the crawler dies, however it dies."""
    # Linux only; elsewhere a crawler killed with -9 may leave its idle workers behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the crawler died while this worker was starting
        os._exit(1)
