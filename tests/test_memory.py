"""lookalike.memory: the byte-counted semaphore the site's decodes share."""

from __future__ import annotations

import threading

import pytest

from lookalike.memory import MemoryBudget


def test_a_reservation_waits_until_enough_is_free_and_an_oversized_one_runs_alone() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []
    second_done = threading.Event()

    def second(nbytes: int) -> None:
        with budget.reserve(nbytes):
            order.append(f"second {nbytes}")
        second_done.set()

    with budget.reserve(60):
        order.append("first 60")
        waiter = threading.Thread(target=second, args=(60,))
        waiter.start()
        assert not second_done.wait(0.2)  # 60 + 60 > 100: it waits
        order.append("first done")
    waiter.join(timeout=5)
    assert order == ["first 60", "first done", "second 60"]
    with budget.reserve(10**12):  # more than the whole budget: takes all of it, runs alone
        assert not _can_reserve(budget, 1)
    assert _can_reserve(budget, 100)


def _can_reserve(budget: MemoryBudget, nbytes: int) -> bool:
    """Whether another thread gets ``nbytes`` within 0.2 s."""
    got = threading.Event()

    def take() -> None:
        with budget.reserve(nbytes):
            got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return got.wait(0.2)


def test_an_empty_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        MemoryBudget(0)
