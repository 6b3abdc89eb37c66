"""The intake API's OpenAPI document: FastAPI's, with problem+json as the media type of every error
and the cloud's auth schemes."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from problems import PROBLEM_MEDIA_TYPE


def problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, built once."""

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with problem+json as the media type of every error and the cloud's auth."""
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        problem_schema = {"$ref": "#/components/schemas/Problem"}
        for path, operations in document["paths"].items():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if int(status) >= 400:
                        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_schema}}
                        response["description"] = HTTPStatus(int(status)).phrase
                if path != "/health":
                    operation["security"] = [{"sigv4": []}, {"api_key": []}]
        schemas = document["components"]["schemas"]
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        document["components"]["securitySchemes"] = {
            "sigv4": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "description": "AWS SigV4 (service execute-api): the default, ApiAuth=AWS_IAM",
            },
            "api_key": {
                "type": "apiKey",
                "name": "x-api-key",
                "in": "header",
                "description": "An API key of the stack's usage plan: ApiAuth=API_KEY",
            },
        }
        app.openapi_schema = document
        return document

    return openapi
