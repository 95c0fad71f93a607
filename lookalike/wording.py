"""Wording people read: counts in sentences (``1 file``, ``2 files``), errors in one line."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless the count is one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def first_line(error: BaseException, fallback: str | None = None) -> str:
    """The first line of an error's message, for a one-line report: libraries (psycopg,
    Pillow, pgserver) put hints, context and log excerpts on the lines after it. An empty
    message gives ``fallback``, or else the error's type name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else fallback or type(error).__name__
