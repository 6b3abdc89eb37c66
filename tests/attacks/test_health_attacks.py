"""Idle connections to the worker's health port cannot pin its threads (issue 14, the network)."""

from __future__ import annotations

import socket
import time

import pytest

from fargate_worker.health import HealthServer

pytestmark = pytest.mark.attack


def get_health(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return client.recv(1024)


def test_attack_an_idle_connection_is_dropped_after_the_timeout():
    # Given a health server with a short timeout
    server = HealthServer("127.0.0.1", 0, lambda: True, timeout_seconds=0.2)
    server.start()
    try:
        # When a client connects and sends nothing, then the server closes the connection
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            assert idle.recv(1) == b""
    finally:
        server.stop()


def test_attack_connections_past_the_cap_are_closed_and_health_recovers():
    # Given a health server that serves two connections at once, both held idle
    server = HealthServer("127.0.0.1", 0, lambda: True, timeout_seconds=30, max_connections=2)
    server.start()
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        # When a third connects, then it is closed at once rather than given a thread
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as third:
            assert third.recv(1) == b""
        # And once the idle ones go, /health answers again
        for connection in idle:
            connection.close()
        deadline = time.monotonic() + 10
        answer = b""
        while not answer.startswith(b"HTTP/1.0 200") and time.monotonic() < deadline:
            answer = get_health(server.port)
        assert answer.startswith(b"HTTP/1.0 200")
    finally:
        server.stop()
