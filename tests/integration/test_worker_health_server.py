"""The worker's health server on loopback: broken is 503, and idle connections cannot pin it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest

from fargate_worker.health import MAX_CONNECTIONS, TIMEOUT_SECONDS, HealthServer

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def serving(is_ready=lambda: True, is_alive=lambda: True):
    server = HealthServer("127.0.0.1", 0, is_ready, is_alive)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_a_broken_worker_fails_health_and_readiness():
    alive = [True]
    with serving(is_alive=lambda: alive[0]) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        alive[0] = False
        assert httpx.get(f"{url}/health").status_code == 503
        assert httpx.get(f"{url}/ready").status_code == 503


def test_two_hundred_idle_connections_neither_pin_threads_nor_block_the_probe():
    with serving() as url:
        port = int(url.rsplit(":", 1)[1])
        before = threading.active_count()
        idle = []
        try:
            # Given 200 connections that send nothing
            for _ in range(200):
                connection = socket.create_connection(("127.0.0.1", port))
                idle.append(connection)
            # When the health check probes / Then it is answered
            answered = None
            # (probes over the cap are closed at once; the idle ones are dropped after the timeout)
            deadline = time.monotonic() + 3 * TIMEOUT_SECONDS
            while answered is None and time.monotonic() < deadline:
                try:
                    answered = httpx.get(f"{url}/health", timeout=2).status_code
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert answered == 200
            # and the idle connections hold at most the cap in threads
            assert threading.active_count() - before <= MAX_CONNECTIONS + 1
        finally:
            for connection in idle:
                connection.close()
