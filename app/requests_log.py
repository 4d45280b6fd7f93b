"""Request ids and the app's logs: one id per request, echoed, stored, and on every log line.

The id is the caller's `X-Request-ID` when it is a sane token (a load balancer's or a client's), else
a new one. It goes back in the response header, into the prediction records the request makes, and
onto every log line written while the request runs. Logs are text (LOG_FORMAT=text, for a terminal)
or one JSON object per line (LOG_FORMAT=json, for a log pipeline); an access line per request says
method, path, status, duration and id.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access = logging.getLogger("app.access")


def request_id() -> str | None:
    """The current request's id (None outside a request)."""
    return g.get("request_id") if has_request_context() else None


def request_started() -> float:
    """When the current request began (time.perf_counter), for its access line and its metrics."""
    return float(g.get("request_started", time.perf_counter()))


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(fmt: str) -> None:
    """Root handler for this process: JSON lines or text, each with the request id when there is one."""
    handler = logging.StreamHandler()
    handler.addFilter(_WithRequestId())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_mlops", False)]:
        root.removeHandler(old)
    handler._mlops = True  # type: ignore[attr-defined]  # ours, replaced when the app is built again
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def install(app: Flask, access_log: bool) -> None:
    @app.before_request
    def _assign() -> None:
        given = request.headers.get(HEADER, "")
        g.request_id = given if _SANE.fullmatch(given) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers[HEADER] = g.get("request_id", "")
        if access_log:
            elapsed = (time.perf_counter() - request_started()) * 1000
            method, path, status = request.method, request.path, response.status_code
            fields = {"method": method, "path": path, "status": status, "duration_ms": round(elapsed, 3)}
            access.info("%s %s %s %.1f ms", method, path, status, elapsed, extra={"fields": fields})
        return response
