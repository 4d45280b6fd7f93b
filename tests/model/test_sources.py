"""Training data is read only from the data-source directory and configured hosts, with limits (#15, item 2)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from model.errors import DataValidationError
from model.kinds.table import read_source
from model.sources import SourcePolicy

TABLE = b"a,b,label\n1,2,x\n3,4,y\n"


class _Handler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _Handler.requests.append(self.path)
        if self.path == "/table.csv":
            self._answer(TABLE)
        elif self.path == "/big.csv":
            self._answer(TABLE * 10_000)
        elif self.path == "/streamed.csv":  # no Content-Length: the cap counts what arrives
            self.send_response(200)
            self.end_headers()
            for _ in range(10_000):
                self.wfile.write(TABLE)
        elif self.path == "/slow.csv":
            time.sleep(3)
            self._answer(TABLE)
        elif self.path == "/away":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:1/internal")
            self.end_headers()
        elif self.path == "/here":
            self.send_response(302)
            self.send_header("Location", "/table.csv")
            self.end_headers()
        else:
            self.send_error(404)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_local_files_must_be_inside_the_data_source_directory(tmp_path):
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "t.csv").write_bytes(TABLE)
    secret = tmp_path / "secret.env"
    secret.write_text("FERNET_KEY=do-not-echo-me\n")
    (inside / "link.csv").symlink_to(secret)
    policy = SourcePolicy(inside)

    assert len(read_source(str(inside / "t.csv"), policy)) == 2
    assert len(read_source("t.csv", policy)) == 2, "relative paths start at the directory"
    for escape in (str(secret), "../secret.env", "link.csv", "/proc/self/environ"):
        with pytest.raises(DataValidationError, match="outside the data-source directory") as caught:
            read_source(escape, policy)
        assert "do-not-echo-me" not in str(caught.value) and "DATA_SOURCE_DIR" in str(caught.value)


def test_urls_are_fetched_from_configured_hosts_only(tmp_path, http_host):
    _Handler.requests.clear()
    closed = SourcePolicy(tmp_path)
    with pytest.raises(DataValidationError, match="not in DATA_SOURCE_HOSTS"):
        read_source(f"{http_host}/table.csv", closed)
    assert _Handler.requests == [], "a refused URL is never requested"

    policy = SourcePolicy(tmp_path, hosts=("127.0.0.1",))
    assert list(read_source(f"{http_host}/table.csv", policy)["label"]) == ["x", "y"]
    assert len(read_source(f"{http_host}/here", policy)) == 2, "a redirect on the same host is followed"
    with pytest.raises(DataValidationError, match="host '127.0.0.2' is not in DATA_SOURCE_HOSTS"):
        read_source(f"{http_host}/away", policy)
    with pytest.raises(DataValidationError, match="must be http or https"):
        policy.fetch("file:///etc/passwd", "file:///etc/passwd")


def test_downloads_have_a_size_cap_and_a_timeout(tmp_path, http_host):
    policy = SourcePolicy(tmp_path, hosts=("127.0.0.1",), max_bytes=10_000, timeout=0.5)
    for path in ("/big.csv", "/streamed.csv"):
        with pytest.raises(DataValidationError, match="larger than DATA_SOURCE_MAX_BYTES"):
            read_source(f"{http_host}{path}", policy)
    with pytest.raises(DataValidationError, match="could not fetch .*Timeout"):
        read_source(f"{http_host}/slow.csv", policy)


def test_errors_name_the_url_without_its_credentials(tmp_path, http_host):
    policy = SourcePolicy(tmp_path, hosts=("127.0.0.1",))
    with pytest.raises(DataValidationError) as caught:
        read_source(f"{http_host.replace('//', '//me:hunter2@')}/missing.csv?token=abc", policy)
    assert "hunter2" not in str(caught.value) and "abc" not in str(caught.value)
