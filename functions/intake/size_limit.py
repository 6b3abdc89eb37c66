"""The request-size limit: uvicorn refuses the same bodies that API Gateway + Lambda would."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from problems import problem

# Lambda's synchronous request limit.
MAX_REQUEST_BYTES = 6 * 1024 * 1024


class RequestSizeLimit:
    """Refuses a body over `max_bytes` with 413 before it is read whole, by its Content-Length or,
    without one, as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = problem(scope["path"], 413, "request-too-large", "Content Too Large", self._detail())
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes HTTPException from a body read through to the handler above.
                raise HTTPException(413, detail=self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"the request body is over {self.max_bytes} bytes; upload big payloads (POST /uploads)"
