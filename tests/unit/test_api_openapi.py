"""docs/openapi.json is the intake app's OpenAPI document, kept in step with the code.

After changing the API, rewrite it with:
    MISTERSMITH_WRITE_OPENAPI=1 .venv/bin/python -m pytest tests/unit/test_api_openapi.py
"""

from __future__ import annotations

import json
import os

import pytest

from local_stack.lambda_runtime import fresh_module
from local_stack.template import ROOT

pytestmark = pytest.mark.unit

DOCUMENT = ROOT / "docs" / "openapi.json"


def current_document() -> dict:
    return fresh_module("functions/intake", "app").app.openapi()


def test_openapi_document_in_docs_matches_the_app():
    # Given the app's OpenAPI document as FastAPI builds it
    document = current_document()
    if os.environ.get("MISTERSMITH_WRITE_OPENAPI") == "1":
        DOCUMENT.write_text(json.dumps(document, indent=2) + "\n")
    # When it is compared with the one in docs/ / Then they are the same
    assert DOCUMENT.exists(), "docs/openapi.json is missing: see this module's docstring"
    assert json.loads(DOCUMENT.read_text()) == document, (
        "docs/openapi.json is stale: see this module's docstring"
    )


def test_openapi_every_error_answer_is_a_problem_document():
    # Given every 4xx / 5xx answer the document declares
    document = current_document()
    errors = [
        response
        for operations in document["paths"].values()
        for operation in operations.values()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    ]
    # Then each is application/problem+json with the Problem schema
    assert errors
    assert all(
        response["content"]
        == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for response in errors
    )


def test_openapi_every_route_but_health_needs_sigv4_or_an_api_key():
    document = current_document()
    security = {
        (path, method): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert security.pop(("/health", "get")) is None
    assert set(map(json.dumps, security.values())) == {json.dumps([{"sigv4": []}, {"api_key": []}])}
