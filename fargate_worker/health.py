"""`/health` (alive) and `/ready` (taking work) on the worker's port (8080), for ECS's container health check."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A probe answers in milliseconds: a connection idle longer, or one past the cap, is dropped, so
# that idle connections cannot pin the worker's threads.
TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 16


class HealthServer:
    """Serves health in a daemon thread; `is_ready` is asked on every `/ready`, `is_alive` on every
    `/health` and `/ready` (a worker with a dead or stalled thread is neither). Each connection
    gets `timeout_seconds` per read; past `max_connections` at once, new ones are closed."""

    def __init__(
        self,
        host: str,
        port: int,
        is_ready: Callable[[], bool],
        is_alive: Callable[[], bool] = lambda: True,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._server = _CappedServer(
            (host, port), _handler_for(is_ready, is_alive, timeout_seconds), max_connections
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _CappedServer(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of connections waits to be accepted (and closed) instead of being dropped unheard.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: closed at once, no thread
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _handler_for(
    is_ready: Callable[[], bool], is_alive: Callable[[], bool], timeout_seconds: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_seconds

        def do_GET(self) -> None:
            if self.path == "/health":
                alive = is_alive()
                self._reply(200 if alive else 503, {"status": "ok" if alive else "broken"})
            elif self.path == "/ready":
                ready = is_alive() and is_ready()
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
