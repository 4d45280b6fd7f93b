"""What the views read from MongoDB, with MongoDB's failures turned into a 503 that says so."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from pymongo.errors import PyMongoError

from app.errors import ApiError, InvalidInput, NotFound
from model.store import MONITORING_REPORTS, PREDICTIONS, window_statistics

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_WINDOW = re.compile(r"^(\d{1,4})([mhd])$")
_LOOKUP_WAIT_SECONDS = 1.0
T = TypeVar("T")


@contextmanager
def storage(what: str) -> Iterator[None]:
    try:
        yield
    except PyMongoError as exc:
        raise ApiError(
            f"{what} unavailable while MongoDB is unreachable ({type(exc).__name__}); try again shortly",
            code="storage_unavailable",
            status=503,
        ) from exc


def prediction(prediction_id: str) -> dict[str, Any]:
    """A prediction record by id: this worker's recent ones first, else MongoDB.

    Another worker may not have flushed it yet: that is waited for only while the id (UUIDv7: its
    first 48 bits are its creation time in ms) is young enough to be in flight, never for an old or
    unknown one.
    """
    if not UUID_PATTERN.match(prediction_id):
        raise InvalidInput(f"'{prediction_id}' is not a prediction id (a lowercase UUID)", field="id")
    recent = current_app.extensions["prediction_log"].recent(prediction_id)
    if recent is not None:
        return recent  # type: ignore[no-any-return]
    created = int(prediction_id[:8] + prediction_id[9:13], 16) / 1000
    age = time.time() - created
    wait = _LOOKUP_WAIT_SECONDS - age if -1.0 < age < _LOOKUP_WAIT_SECONDS else 0.0
    db = current_app.extensions["db"]
    with storage("the prediction log is"):
        record = _poll(lambda: db[PREDICTIONS].find_one({"_id": prediction_id, "kind": "prediction"}), wait)
    if record is None:
        raise NotFound(f"no prediction with id {prediction_id}")
    return record


def statistics(window: str) -> dict[str, Any]:
    """Statistics over a window such as 30m, 24h or 7d (at most 366 days)."""
    match = _WINDOW.match(window)
    if not match:
        raise InvalidInput(f"window must look like 30m, 24h or 7d, got {window!r}", field="window")
    amount, unit = int(match.group(1)), match.group(2)
    delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]
    if delta > timedelta(days=366):
        raise InvalidInput("window may cover at most 366 days", field="window")
    with storage("statistics are"):
        return window_statistics(current_app.extensions["db"], datetime.now(UTC) - delta)


def latest_report() -> dict[str, Any]:
    with storage("the monitoring report is"):
        report = current_app.extensions["db"][MONITORING_REPORTS].find_one(sort=[("created_at", -1)])
    if report is None:
        raise NotFound("no monitoring report yet: the monitor_platform DAG writes one per run")
    report["id"] = str(report.pop("_id"))
    report["created_at"] = report["created_at"].isoformat()
    return report  # type: ignore[no-any-return]


def _poll(read: Callable[[], T | None], seconds: float) -> T | None:
    deadline = time.monotonic() + seconds
    while True:
        found = read()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
