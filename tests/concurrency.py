"""Checks racing flags: the thread choreography both bank tests share."""

from __future__ import annotations

import threading
from collections.abc import Callable


def check_while_flagging(
    check_once: Callable[[], None],
    flag: Callable[[list[int]], None],
    values: list[int],
    threads: int = 3,
) -> list[BaseException]:
    """Call ``check_once`` over and over in ``threads`` threads while ``threads`` others flag
    ``values`` between them; return what any thread raised (the caller asserts on it)."""
    errors: list[BaseException] = []
    done = threading.Event()

    def reporting(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # reported to the main thread
                errors.append(error)

        return run

    def keep_checking() -> None:
        while not done.is_set():
            check_once()

    checkers = [threading.Thread(target=reporting(keep_checking)) for _ in range(threads)]
    flaggers = [
        threading.Thread(target=reporting(lambda part=values[i::threads]: flag(part)))
        for i in range(threads)
    ]
    for thread in checkers + flaggers:
        thread.start()
    for thread in flaggers:
        thread.join()
    done.set()
    for thread in checkers:
        thread.join()
    return errors
