"""Scrapy's downloader, with per-host concurrency that holds however the reactor is scheduled.

Scrapy 2.19 counts a request against its slot (``slot.transferring``) only when the task it
scheduled for the download starts running. ``_process_queue`` re-checks the slot right after
scheduling one: with no download delay, or whenever more than the delay passes before the
re-check (the reactor thread preempted by another thread or the OS for a millisecond), it
sees the slot still free and starts another request, and another, beyond
CONCURRENT_REQUESTS_PER_DOMAIN. Counting the request the moment it leaves the queue closes
that window; Scrapy's own ``_download`` adds it again (a set) and removes it when done.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from scrapy import Request
from scrapy.core.downloader import Downloader, Slot
from scrapy.http import Response
from twisted.internet.defer import Deferred


class SlotCountingDownloader(Downloader):
    def _wait_for_download(
        self, slot: Slot, request: Request, queue_dfd: Deferred[Response]
    ) -> Coroutine[Any, Any, None]:
        slot.transferring.add(request)
        return super()._wait_for_download(slot, request, queue_dfd)
