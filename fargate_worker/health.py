"""`/health` (alive) and `/ready` (taking work) on the worker's port (8080), for ECS's container health check."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HealthServer:
    """Serves health in a daemon thread; `is_ready` is asked on every `/ready`."""

    def __init__(self, host: str, port: int, is_ready: Callable[[], bool]) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler_for(is_ready))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(is_ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/ready":
                ready = is_ready()
                self._reply(200 if ready else 503, {"status": "ready" if ready else "not ready"})
            else:
                self._reply(404, {"detail": "not found"})

        def _reply(self, status: int, body: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - health probes every few seconds would flood the logs
            return

    return Handler
