"""Request bodies as clients send them: JSON, whatever the Content-Type says.

API Gateway hands Lambda a base64 body (`isBase64Encoded`) for what it treats as binary, and Mangum
decodes it. `curl -d` sends `application/x-www-form-urlencoded`, `sam local generate-event` and many
scripts send no Content-Type, some clients `text/plain`: a body of those types that parses as JSON is
taken as JSON. Any other type is a 415, and bytes that are not UTF-8 a 400, each a problem document
saying what to send."""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from problems import problem

JSON_TYPES = frozenset({"application/json"})
# Types that clients send JSON under without meaning anything else by it.
LENIENT_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded"})
WHAT_TO_SEND = "send the body as UTF-8 JSON with Content-Type: application/json"


def media_type(scope: Scope) -> str:
    value = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    return value.split(";", 1)[0].strip().lower()


class JsonBodies:
    """Sits in front of the routes that take a JSON body (POST and PUT): checks a body's encoding and
    type, and hands a lenient-typed body that is JSON on as application/json."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        kind = media_type(scope)
        try:
            body = await _read_all(receive)
        except HTTPException as error:  # the size limit's 413, raised while the body is read
            phrase = HTTPStatus(error.status_code).phrase
            refused = problem(
                scope["path"], error.status_code, "request-too-large", phrase, str(error.detail)
            )
            await refused(scope, receive, send)
            return
        refusal = _refusal(kind, body)
        if refusal is not None:
            status, slug, title, detail = refusal
            await problem(scope["path"], status, slug, title, detail)(scope, receive, send)
            return
        if kind in LENIENT_TYPES and body:
            headers = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
            scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, _replay(body), send)


def _refusal(kind: str, body: bytes) -> tuple[int, str, str, str] | None:
    if not body:
        return None
    if kind not in JSON_TYPES and not kind.endswith("+json") and kind not in LENIENT_TYPES:
        return (
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            f"{kind} is not accepted: {WHAT_TO_SEND}",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        detail = f"the body is not UTF-8 (byte {error.start} is {body[error.start]:#04x}): {WHAT_TO_SEND}"
        return (400, "body-not-utf8", "Body not UTF-8", detail)
    if kind in LENIENT_TYPES and kind:
        try:
            json.loads(text)
        except ValueError:
            return (
                415,
                "unsupported-media-type",
                "Unsupported Media Type",
                f"the {kind} body is not JSON: {WHAT_TO_SEND}",
            )
    return None


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
