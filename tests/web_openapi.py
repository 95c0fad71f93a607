"""Checking real API responses against the OpenAPI document the site publishes."""

from __future__ import annotations

from jsonschema import Draft202012Validator, FormatChecker
from werkzeug.test import TestResponse

from searchweb.api import openapi_document


def assert_matches_openapi(response: TestResponse, path: str, method: str = "get") -> None:
    """The status is documented for this operation and the JSON body fits its schema."""
    document = openapi_document()
    operation = document["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{method.upper()} {path} answered {response.status_code}: undocumented"
    schema = documented["content"][response.mimetype]["schema"]
    # Resolve "#/components/…" references against the document's own components.
    validator = Draft202012Validator(
        {**schema, "components": document["components"]}, format_checker=FormatChecker()
    )
    validator.validate(response.get_json())
