"""`mistersmith console`: the console page on 127.0.0.1, its API calls forwarded to the API with the
client's auth (SigV4 from the usual AWS credentials, or the API key). The browser never holds a
credential; the API's answers, problem documents included, come back as they are."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mistersmith_client.client import MisterSmithClient

CONSOLE_PAGE = Path(__file__).with_name("console") / "index.html"
CONSOLE_PATH = "/console/"
# Hop-by-hop and length headers are the server's own to set.
_DROPPED_HEADERS = frozenset(
    {"connection", "content-length", "content-encoding", "transfer-encoding", "keep-alive"}
)


class ConsoleServer:
    """Serves the page and forwards every other request to `api`; `serve_forever` until `close`."""

    def __init__(self, api: MisterSmithClient, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self._server = ThreadingHTTPServer((host, port), _handler(api))
        self._server.daemon_threads = True
        self._serving = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{CONSOLE_PATH}"

    def serve_forever(self) -> None:
        self._serving = True
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> threading.Thread:
        self._serving = True
        thread = threading.Thread(target=self.serve_forever, name="console", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if self._serving:  # shutdown() waits for a serving loop, and would wait forever for none
            self._server.shutdown()
        self._server.server_close()


def _handler(api: MisterSmithClient) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.split("?")[0] in ("/", "/console"):
                self._answer(308, b"", {"location": CONSOLE_PATH})
            elif self.path.split("?")[0] == CONSOLE_PATH:
                self._answer(200, CONSOLE_PAGE.read_bytes(), {"content-type": "text/html; charset=utf-8"})
            else:
                self._forward()

        def do_POST(self) -> None:
            self._forward()

        def do_DELETE(self) -> None:
            self._forward()

        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                name: value for name in ("content-type", "accept") if (value := self.headers.get(name))
            }
            try:
                response = api.forward(self.command, self.path, content=body, headers=headers)
            except Exception as error:  # the page shows it as a problem document, as the API's own
                problem = {"status": 502, "title": "API unreachable", "detail": str(error)}
                self._answer(502, json.dumps(problem).encode(), {"content-type": "application/problem+json"})
                return
            kept = {
                name: value
                for name, value in response.headers.items()
                if name.lower() not in _DROPPED_HEADERS
            }
            self._answer(response.status_code, response.content, kept)

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the page polls every 2 s; a line per request would bury everything else

    return Handler
