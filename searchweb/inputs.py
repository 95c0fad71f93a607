"""Every text a request carries is checked once, before any view runs.

PostgreSQL refuses NUL in text and psycopg cannot encode a lone surrogate (JSON's ``"\\ud800"``),
so either, in any parameter that reaches a query, used to end in a 500. Checking here, for the
query string, form fields, upload file names, URL path parts and every string in a JSON body,
keeps the views free of it and gives one clear 400. JSON nested past Python's recursion limit
is refused as unreadable JSON instead of raising RecursionError.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with too-deep nesting reported as invalid JSON (a ValueError)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored or searched for, or None when it can."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not valid Unicode text)"
    return None


def _json_texts(body: object) -> Iterator[tuple[str, str]]:
    """Every string (keys included) in a parsed JSON body, named by its top-level key."""
    top = body.items() if isinstance(body, dict) else [("the JSON body", body)]
    for name, value in top:
        yield name, name
        for text in _strings_in(value):
            yield name, text


def _strings_in(value: object) -> Iterator[str]:
    """Depth first with a stack of iterators: no recursion, and memory only for the depth."""
    stack: list[Iterator[object]] = [iter([value])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                stack.append(itertools.chain(item.keys(), item.values()))
                break
            elif isinstance(item, list):
                stack.append(iter(item))
                break
        else:
            stack.pop()


def request_texts() -> Iterator[tuple[str, str]]:
    """(parameter name, text) for every text this request carries."""
    for source in (request.args, request.form):
        for key, values in source.lists():
            yield key, key
            for value in values:
                yield key, value
    for key, upload in request.files.items(multi=True):
        yield key, upload.filename or ""
    for key, value in (request.view_args or {}).items():
        if isinstance(value, str):
            yield key, value
    if request.is_json:
        yield from _json_texts(request.get_json(silent=True))


def refuse_unusable_text() -> None:
    """400 naming the parameter, before any view sees a text the database cannot take."""
    for name, text in request_texts():
        problem = text_problem(text)
        if problem is not None:
            raise BadRequest(f"{name} contains {problem}")


def init_input_checks(app: Flask) -> None:
    app.json = BoundedJSONProvider(app)
    app.before_request(refuse_unusable_text)
