"""The gunicorn worker's keep-alive shortcut (app/http_worker.py) keeps gunicorn's promises.

A thread that answered a keep-alive request serves the connection's next one itself when it comes at
once. That must not let a busy connection keep a waiting one from the only thread. A WSGI app of
three lines under the real worker class.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests

from ops import services

_TINY = """
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
"""


@pytest.fixture
def serve(tmp_path: Path):  # noqa: ANN201
    procs = []

    def start(*options: str) -> str:
        (tmp_path / "tiny.py").write_text(_TINY)
        (tmp_path / "conf.py").write_text("control_socket_disable = True\n")
        port = services.free_port()
        service = services.Service(
            name="tiny",
            command=[
                str(services.BIN / "gunicorn"), "--config", str(tmp_path / "conf.py"),
                "--worker-class", "app.http_worker.DeadlineThreadWorker", "--workers", "1",
                "--bind", f"127.0.0.1:{port}", "--chdir", str(tmp_path), "--pythonpath", str(services.ROOT),
                *options, "tiny:app",
            ],
            url=f"http://127.0.0.1:{port}",
            log=tmp_path / "gunicorn.log",
            healthy=lambda: services.http_ok(f"http://127.0.0.1:{port}/"),
        )  # fmt: skip
        proc = services.start(service)
        procs.append(proc)
        services.wait_healthy(service, proc)
        return service.url

    yield start
    for proc in procs:
        services.stop_group(proc.pid)


def test_a_busy_keep_alive_connection_leaves_the_thread_to_a_waiting_one(serve):
    url = serve("--threads", "1")
    stop = threading.Event()

    def busy() -> None:  # one connection, one request after another, for as long as the test runs
        with requests.Session() as session:
            while not stop.is_set():
                session.get(url, timeout=10)

    chatter = threading.Thread(target=busy)
    chatter.start()
    try:
        time.sleep(0.5)
        asked = time.monotonic()
        assert requests.get(url, timeout=10).status_code == 200  # a new connection, the same single thread
        waited = time.monotonic() - asked
    finally:
        stop.set()
        chatter.join()
    assert waited < 2, f"a new connection waited {waited:.1f} s while another kept the only thread busy"
