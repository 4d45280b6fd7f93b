"""Half-sent requests do not take the service down (issue #15, item 12).

With gunicorn's sync workers published directly, two clients that sent half a request each held both
workers, and `/health` went unanswered for 15 s. The app now runs gthread workers with a deadline on
socket reads (app/http_worker.py): a slow client holds one thread for at most APP_READ_TIMEOUT
seconds (3 in the test session's app), not a worker for ever.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import requests

SLOW_CLIENTS = 6  # three times what froze the sync workers; fewer than one worker's threads
READ_TIMEOUT = 3.0  # the served_app fixture's APP_READ_TIMEOUT


def _half_sent(url, body: bool) -> socket.socket:
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    if body:  # whole headers, a body that stops
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b'Content-Length: 100000\r\n\r\n{"instances": [')
    else:  # headers that stop halfway
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
    return sock


def test_half_sent_requests_leave_health_answering_and_are_dropped(served_app):
    url = urlsplit(served_app.url)
    stalled = [_half_sent(url, body=i % 2 == 0) for i in range(SLOW_CLIENTS)]
    started = time.monotonic()
    try:
        time.sleep(0.5)  # let the workers pick the slow clients up
        for _ in range(10):
            asked = time.monotonic()
            response = requests.get(f"{served_app.url}/health", timeout=5)
            assert response.status_code == 200
            assert time.monotonic() - asked < 2, "a slow client held up /health"
        for i, sock in enumerate(stalled):
            answer = sock.recv(4096)  # the server closes (or answers 408) once the deadline passes
            waited = time.monotonic() - started
            assert waited < READ_TIMEOUT + 5, f"client {i} was held {waited:.1f} s"
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:100]
    finally:
        for sock in stalled:
            sock.close()
