"""Gunicorn's gthread worker, with a deadline on every socket read and write of a request.

gthread already waits for a request's first bytes in its poller, so a client that connects and sends
nothing costs no thread. A client that sends half a request does hold one: gthread reads the rest
with a blocking socket and no timeout, forever. Here the client socket's blocking mode carries a
timeout instead (APP_READ_TIMEOUT seconds between two reads or writes), so a stalled request frees
its thread; the app answers a body that stops arriving with 408 (app/errors.py).

gthread also hands a keep-alive connection back to its poller after every response: the next request
goes poller -> thread pool -> thread -> poller again, two thread switches and a pipe write, about
0.2 ms of a 1 ms prediction (bench/). Here the thread that answered waits up to _LINGER for the
connection's next request and serves it itself, but only while every open connection of this worker
could have a thread of its own: a busy connection never keeps a waiting one from a thread.

Ours because gunicorn has neither setting; the rest is gunicorn's own worker.
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

_LINGER = 0.002  # seconds a thread waits for its keep-alive connection's next request


class _Deadlined:
    """A client socket whose blocking mode has a timeout; everything else is the socket's own."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout

    def setblocking(self, flag: bool) -> None:
        self._sock.settimeout(self._timeout if flag else 0.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class DeadlineThreadWorker(ThreadWorker):
    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, _Deadlined):
            conn.sock = _Deadlined(conn.sock, float(os.environ.get("APP_READ_TIMEOUT", "10")))
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        # A stopping worker (max_requests, a signal) closes the connection after its response: keep is False.
        keep = super().handle(conn)
        while keep is True and self.nr_conns <= self.cfg.threads and _readable(conn.sock, _LINGER):
            keep = super().handle(conn)
        return keep


def _readable(sock: Any, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])
