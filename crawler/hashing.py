"""Fingerprinting in worker processes, so decoding runs beside the reactor, not behind its GIL.

Threads already overlap Pillow's C code, but the hashes' Python parts and the reactor share
one GIL; on two cores that capped a crawl well below what the CPUs can do. Workers are
spawned (not forked from a process with threads) and, on Linux, die with the crawler
even on kill -9.

A worker that dies mid-image (the OOM killer on a hostile file, a decoder's segfault) breaks
a ``ProcessPoolExecutor`` for good: it fails every item in flight and refuses new ones. The
``Fingerprinters`` replace the pool and try each failed item again alone, in a one-worker
pool: an innocent item gets its fingerprint, the one that kills its worker again is reported
as ``WORKER_DIED`` and the crawl goes on.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from lookalike.fingerprint import Fingerprint, ImageRejected, fingerprint

_PR_SET_PDEATHSIG = 1
WORKER_DIED = "fingerprint worker died"


@dataclass(frozen=True, slots=True)
class Job:
    """One image handed to a pool, with what it takes to try it again elsewhere."""

    pool: ProcessPoolExecutor
    future: Future[Fingerprint | str]
    data: bytes
    max_pixels: int
    thumbnail: bool


class Fingerprinters:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool = start_pool(workers)
        self._replacing = threading.Lock()  # the reactor submits, the writer collects
        self._alone: ProcessPoolExecutor | None = None  # only the writer thread uses it

    def submit(self, data: bytes, max_pixels: int, thumbnail: bool) -> Job:
        with self._replacing:
            try:
                future = self._pool.submit(fingerprint_or_kind, data, max_pixels, thumbnail)
            except BrokenProcessPool:
                self._replace(self._pool)
                future = self._pool.submit(fingerprint_or_kind, data, max_pixels, thumbnail)
            return Job(self._pool, future, data, max_pixels, thumbnail)

    def result(self, job: Job) -> Fingerprint | str:
        """The fingerprint or the kind of failure; raises what the decoder raised."""
        try:
            return job.future.result()
        except BrokenProcessPool:
            with self._replacing:
                self._replace(job.pool)
            return self._try_alone(job)

    def shutdown(self) -> None:
        for pool in (self._pool, self._alone):
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:  # not yet replaced by another item it failed
            broken.shutdown(wait=False)
            self._pool = start_pool(self._workers)

    def _try_alone(self, job: Job) -> Fingerprint | str:
        """Whether this very item kills its worker, with no other item beside it."""
        self._alone = self._alone or start_pool(1)
        try:
            return self._alone.submit(
                fingerprint_or_kind, job.data, job.max_pixels, job.thumbnail
            ).result()
        except BrokenProcessPool:
            self._alone.shutdown(wait=False)
            self._alone = None
            return WORKER_DIED


def start_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def fingerprint_or_kind(data: bytes, max_pixels: int, thumbnail: bool) -> Fingerprint | str:
    """The core's fingerprint, or the kind of rejection (a :class:`Rejection`): the crawler
    counts and records failures by kind, without their details."""
    try:
        return fingerprint(
            data, max_pixels=max_pixels, with_thumbnail=thumbnail, with_features=True
        )
    except ImageRejected as error:
        return error.kind


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the crawler dies, however it dies."""
    # Linux only; elsewhere a crawler killed with -9 may leave its idle workers behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the crawler died while this worker was starting
        os._exit(1)
