"""The prediction log: requests enqueue records; one background thread writes them to MongoDB.

Guarantees, in order of the path a record takes:
- `submit` never blocks on MongoDB: it appends to a bounded in-memory queue (if the queue is full,
  the records go straight to the durable outbox instead).
- The writer thread takes batches off the queue. If MongoDB accepts a batch, its rollups are
  incremented for exactly the documents that were new. If MongoDB is unreachable, the batch is
  appended to this process's outbox file and fsync'ed, and later replayed in order.
- Replays are idempotent: every record has a unique `_id`, duplicates are ignored, and rollups count
  only first inserts.
- On a clean shutdown the queue is drained (to MongoDB, or to the outbox).
- A record still in the in-memory queue when the process is SIGKILLed is lost: that window is at
  most `flush_seconds` plus one write. Records in the outbox survive any crash.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from pymongo import ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from model.statistics import rollup_increments
from model.store import FEEDBACK, PREDICTIONS, ROLLUPS

log = logging.getLogger(__name__)

_DUPLICATE_KEY = 11000


@dataclass
class LogStats:
    written: int = 0
    duplicates: int = 0
    outboxed: int = 0
    replayed: int = 0
    failures: int = 0


class Outbox:
    """Append-only BSON files, one per process; any process may replay a dead process's file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"outbox-{os.getpid()}-{uuid.uuid4().hex[:8]}.bson"
        self._lock = threading.Lock()

    def append(self, items: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Append (collection, document) pairs and fsync before returning."""
        encoded = [bson.encode({"c": coll, "d": doc}) for coll, doc in items]
        if not encoded:
            return 0
        with self._lock, self.path.open("ab") as fh:
            fh.write(b"".join(encoded))
            fh.flush()
            os.fsync(fh.fileno())
        return len(encoded)

    def claim(self) -> list[Path]:
        """Take ownership of every outbox file that is ours or whose writer is gone, oldest first."""
        claimed = []
        candidates = sorted(self.dir.glob("outbox-*.bson"), key=lambda p: p.stat().st_mtime)
        candidates += sorted(self.dir.glob("replay-*.bson"), key=lambda p: p.stat().st_mtime)
        for path in candidates:
            owner = int(path.name.split("-")[1])
            if path.name.startswith("outbox-") and path != self.path and _alive(owner):
                continue
            if path.name.startswith("replay-") and owner != os.getpid() and _alive(owner):
                continue
            target = self.dir / f"replay-{os.getpid()}-{uuid.uuid4().hex[:8]}.bson"
            with self._lock:
                try:
                    path.rename(target)
                except FileNotFoundError:
                    continue  # another process claimed it first
            claimed.append(target)
        return claimed

    def pending(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.bson") if p.exists())

    @staticmethod
    def read(path: Path) -> list[tuple[str, dict[str, Any]]]:
        items = []
        with path.open("rb") as fh:
            try:
                for entry in bson.decode_file_iter(fh):
                    items.append((entry["c"], entry["d"]))
            except bson.errors.InvalidBSON:
                log.warning("outbox %s ends in a partial record (crash mid-append); the rest was replayed", path)
        return items


class PredictionLog:
    def __init__(
        self,
        db_factory: Callable[[], Database],
        outbox_dir: Path,
        queue_size: int = 100_000,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        retry_seconds: float = 1.0,
        recent_size: int = 20_000,
    ) -> None:
        self._db_factory = db_factory
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=queue_size)
        self.outbox = Outbox(outbox_dir)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.stats = LogStats()
        self.mongo_ok = True
        self.last_error: str | None = None
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._recent_size = recent_size
        self._recent_lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    # -- request side ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, records: list[dict[str, Any]], collection: str = PREDICTIONS) -> None:
        """Hand records to the writer; never waits for MongoDB."""
        overflow = []
        with self._recent_lock:
            for record in records:
                self._recent[record["_id"]] = record
            while len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)
        for record in records:
            try:
                self._queue.put_nowait((collection, record))
            except queue.Full:
                overflow.append((collection, record))
        if overflow:
            self.outbox.append(overflow)
            self.stats.outboxed += len(overflow)

    def record_error(
        self, route: str, status: int, code: str, request_id: str | None, model: dict[str, Any] | None = None
    ) -> None:
        self.submit(
            [
                {
                    "_id": str(uuid.uuid4()),
                    "kind": "error",
                    "ts": datetime.now(UTC),
                    "source": route,
                    "status": status,
                    "error": code,
                    "request_id": request_id,
                    "model_name": (model or {}).get("name"),
                    "model_version": (model or {}).get("version"),
                }
            ]
        )

    def recent(self, record_id: str) -> dict[str, Any] | None:
        with self._recent_lock:
            return self._recent.get(record_id)

    def depth(self) -> int:
        return self._queue.qsize()

    # -- writer side ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_replay = 0.0
        while not self._stop.is_set():
            batch = self._take(self.flush_seconds)
            if time.monotonic() >= next_replay:
                if not self._replay():
                    next_replay = time.monotonic() + self.retry_seconds
            if batch:
                self._write_or_outbox(batch)
            elif self._queue.empty():
                self._idle.set()

    def _take(self, wait: float) -> list[tuple[str, dict[str, Any]]]:
        batch: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + wait
        while len(batch) < self.batch_size:
            timeout = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(timeout, 0)) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            self._idle.clear()
            batch.append(item)
        return batch

    def _write_or_outbox(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        # Keep order: while older records wait in the outbox, newer ones queue behind them there.
        if not self.mongo_ok or self._has_outbox():
            self.outbox.append(batch)
            self.stats.outboxed += len(batch)
            return
        try:
            self._write(batch)
        except PyMongoError as exc:
            self._mark_down(exc)
            self.outbox.append(batch)
            self.stats.outboxed += len(batch)

    def _has_outbox(self) -> bool:
        return any(p.stat().st_size for p in self.outbox.dir.glob("*.bson") if p.exists())

    def _replay(self) -> bool:
        """Replay outbox files in order; True when nothing is left (or MongoDB is back and took it all)."""
        if not self._has_outbox():
            self.mongo_ok = True if self.mongo_ok or self._ping() else False
            return True
        if not self.mongo_ok and not self._ping():
            return False
        for path in self.outbox.claim():
            items = Outbox.read(path)
            try:
                for start in range(0, len(items), self.batch_size):
                    self._write(items[start : start + self.batch_size])
            except PyMongoError as exc:
                self._mark_down(exc)
                return False  # the replay file stays and is claimed again next time
            path.unlink()
            self.stats.replayed += len(items)
            log.info("replayed %d records from %s", len(items), path.name)
        self.mongo_ok = True
        return True

    def _ping(self) -> bool:
        try:
            self._db_factory().client.admin.command("ping")
            if not self.mongo_ok:
                log.warning("MongoDB is reachable again; replaying the outbox")
            return True
        except PyMongoError as exc:
            self._mark_down(exc)
            return False

    def _mark_down(self, exc: Exception) -> None:
        if self.mongo_ok:
            log.warning("MongoDB unavailable, logging to the outbox at %s: %s", self.outbox.dir, exc)
        self.mongo_ok = False
        self.last_error = str(exc)[:300]
        self.stats.failures += 1

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        db = self._db_factory()
        predictions = [doc for coll, doc in batch if coll == PREDICTIONS]
        feedback = [doc for coll, doc in batch if coll == FEEDBACK]
        if predictions:
            new = _insert_new(db[PREDICTIONS], predictions)
            self.stats.written += len(new)
            self.stats.duplicates += len(predictions) - len(new)
            increments = rollup_increments(new)
            if increments:
                db[ROLLUPS].bulk_write(
                    [UpdateOne({"_id": key}, update, upsert=True) for key, update in increments.items()],
                    ordered=False,
                )
        if feedback:
            db[FEEDBACK].bulk_write([ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in feedback])

    # -- lifecycle ------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.wait(0.05) and self._queue.empty():
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue (to MongoDB, or to the outbox), then stop the writer."""
        self.flush(timeout)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        leftover = []
        while True:
            try:
                leftover.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if leftover:
            self.outbox.append(leftover)
            self.stats.outboxed += len(leftover)


def _insert_new(collection: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """insert_many that ignores duplicate ids and returns the documents that were actually new."""
    try:
        collection.insert_many(docs, ordered=False)
        return docs
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != _DUPLICATE_KEY for e in errors):
            raise
        duplicate = {e["index"] for e in errors}
        return [doc for i, doc in enumerate(docs) if i not in duplicate]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
