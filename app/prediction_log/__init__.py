"""The prediction log: requests journal their records and enqueue them; a background thread writes to MongoDB.

Guarantees, in order of the path a record takes:
- `submit` encodes the records to BSON and appends them to this process's journal with one write()
  before the response goes out: from then on a crash of the process (even SIGKILL) cannot lose them.
  The writer fsyncs the journal every flush interval, so a power loss can cost at most that interval.
- The records are also put on a bounded in-memory queue. The writer thread takes batches off it and
  inserts the already-encoded documents into MongoDB, then adds the new ones to the hourly rollups,
  once: if that update fails after the insert, it is kept and retried (model/store.py apply_rollups
  ignores a retry that did land), and a clean shutdown leaves what is still pending in the outbox.
  If MongoDB is unreachable, the batch goes to the durable outbox (fsync'ed) and is replayed in order
  when MongoDB answers again. A full queue sends records to the outbox too.
- A journal segment is deleted once every record in it is in MongoDB or in the outbox. Segments left by
  a dead process (its pid gone, or reused by us) are replayed by the next process that looks.
- Replays are idempotent: every record has a unique `_id`, duplicates are ignored, and rollups count
  only first inserts. One window stays: a process killed between an insert and its rollup update
  leaves that insert uncounted (the records themselves are all there).
- On a clean shutdown the queue is drained (to MongoDB, or to the outbox).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from app.prediction_log.files import HOST, TZ_AWARE, LogUnavailable, PartialFile, entry, wrap
from app.prediction_log.journal import Journal
from app.prediction_log.outbox import Outbox
from model.ids import time_ordered_ids
from model.statistics import merge_increments, rollup_increments
from model.store import FEEDBACK, PREDICTIONS, ROLLUPS, apply_rollups, insert_predictions

log = logging.getLogger(__name__)
__all__ = ["HOST", "Journal", "LogUnavailable", "Outbox", "PartialFile", "PredictionLog", "entry", "wrap"]


@dataclass
class LogStats:
    written: int = 0
    duplicates: int = 0
    outboxed: int = 0
    replayed: int = 0
    failures: int = 0


class PredictionLog:
    def __init__(
        self,
        db_factory: Callable[[], Database],
        outbox_dir: Path,
        queue_size: int = 100_000,
        batch_size: int = 2_000,
        flush_seconds: float = 0.2,
        retry_seconds: float = 1.0,
        recent_size: int = 20_000,
        recent_max_bytes: int = 32 << 20,
        max_outbox_bytes: int = 1 << 30,
    ) -> None:
        self._db_factory = db_factory
        self._queue: queue.Queue[Chunk] = queue.Queue()  # one entry per submit
        self.queue_size = queue_size  # records held in memory; more go to the outbox until the writer catches up
        self._queued = 0
        self._queued_lock = threading.Lock()
        token = uuid.uuid4().hex[:8]
        self.writer_id = f"{HOST}-{os.getpid()}-{token}"  # whose rollup counts these are (apply_rollups)
        self._seq = 0
        self._pending: list[tuple[int, dict[str, dict[str, Any]]]] = []  # (seq, increments) not yet applied
        self.outbox = Outbox(outbox_dir, token)
        self.journal = Journal(outbox_dir, token)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.stats = LogStats()
        self.mongo_ok = True
        self.last_error: str | None = None
        self.max_outbox_bytes = max_outbox_bytes
        self.outbox_bytes = self.outbox.pending()  # refreshed by the writer; checked on the request path
        self.writer_error: str | None = None  # the writer's last failure, until a cycle succeeds again
        self._retry: list[Chunk] = []  # taken off the queue, not yet in MongoDB or the outbox
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._recent_size = recent_size
        self._recent_bytes = 0
        self.recent_max_bytes = recent_max_bytes  # the cache is bounded by bytes too: records vary in size
        self._recent_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    # -- request side ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(
        self,
        records: list[dict[str, Any]],
        collection: str = PREDICTIONS,
        increments: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Journal the records, then hand them to the writer; never waits for MongoDB."""
        raws = [bson.encode(record) for record in records]
        entries = b"".join(wrap(collection, raw) for raw in raws)
        if increments is None and collection == PREDICTIONS:
            increments = rollup_increments(records)
        self.submit_encoded(collection, entries, raws, [record["_id"] for record in records], increments)

    def submit_encoded(
        self,
        collection: str,
        entries: bytes,
        raws: list[bytes],
        ids: list[str],
        increments: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Like submit, for records already encoded: journal entries (joined), raw documents, their ids,
        and for predictions the rollup increments they make (model/statistics.py).

        Raises LogUnavailable, and nothing is recorded, when the journal cannot take the records or the
        outbox is at its cap: the caller answers 503 instead of acknowledging.
        """
        if self.outbox_bytes >= self.max_outbox_bytes:
            raise LogUnavailable(
                f"the outbox holds {self.outbox_bytes:,} bytes, its cap (LOG_MAX_OUTBOX_BYTES): "
                "MongoDB has been unreachable for too long"
            )
        segment = self.journal.append([entries], count=len(raws))
        if collection == PREDICTIONS:  # feedback shares its prediction's _id: it must not replace it here
            with self._recent_lock:
                self._recent.update(zip(ids, raws, strict=True))  # new ids: nothing is replaced
                self._recent_bytes += sum(map(len, raws))
                while self._recent and (
                    len(self._recent) > self._recent_size or self._recent_bytes > self.recent_max_bytes
                ):
                    self._recent_bytes -= len(self._recent.popitem(last=False)[1])
        with self._queued_lock:
            room = self._queued + len(raws) <= self.queue_size
            if room:
                self._queued += len(raws)
        if room:
            self._queue.put_nowait(Chunk(segment, collection, raws, increments))
            if self._queued >= self.batch_size:
                self._wake.set()
        else:  # MongoDB is slower than the requests: spill to disk rather than grow without bound
            try:
                self.stats.outboxed += self.outbox.append(entries, len(raws))
                self.outbox_bytes += len(entries)
                self.journal.done({segment: len(raws)})
            except OSError as exc:  # journaled already, so durable: queue it past the bound rather than fail
                log.warning("could not spill to the outbox (%s); queueing past the bound", exc)
                with self._queued_lock:
                    self._queued += len(raws)
                self._queue.put_nowait(Chunk(segment, collection, raws, increments))

    def record_error(
        self, route: str, status: int, code: str, request_id: str | None, model: dict[str, Any] | None = None
    ) -> None:
        self.submit(
            [
                {
                    "_id": time_ordered_ids(1)[0],
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
        """A prediction this process logged lately, whether or not MongoDB has it yet."""
        with self._recent_lock:
            raw = self._recent.get(record_id)
        return None if raw is None else bson.decode(raw, codec_options=TZ_AWARE)

    def depth(self) -> int:
        """Records waiting in memory for the writer."""
        return self._queued

    # -- writer side ----------------------------------------------------------------------------

    def _run(self) -> None:
        """The writer: never dies on an error. A failed cycle is logged, reported in /health, and retried
        with backoff; its records stay in the journal (and in memory) meanwhile."""
        next_replay = 0.0
        backoff = 0.0
        while not self._stop.is_set():
            # Woken by a full batch, a flush or the interval, not by every request: at one wake-up per
            # request the writer took the GIL from request threads a thousand times a second.
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                next_replay = self._cycle(next_replay)
            except Exception as exc:
                backoff = min(max(backoff * 2, self.retry_seconds), 30.0)
                if self.writer_error is None:
                    log.exception("the prediction log writer failed; retrying every %.0fs at most", backoff)
                self.writer_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                self._stop.wait(backoff)
                continue
            backoff = 0.0
            if self.writer_error is not None:
                log.warning("the prediction log writer recovered")
                self.writer_error = None

    def _cycle(self, next_replay: float) -> float:
        if time.monotonic() >= next_replay and not self._replay():
            next_replay = time.monotonic() + self.retry_seconds
        waiting = len(self._retry) + self._queue.qsize()  # what is queued now, not what keeps arriving
        while waiting > 0 and (batch := self._take(waiting)):  # one insert per batch, not per request
            waiting -= len(batch)
            self._write_or_outbox(batch)
        if self._queue.empty() and not self._retry:
            self._idle.set()
        self.journal.sync()
        self.outbox_bytes = self.outbox.pending()
        return next_replay

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _take(self, most: int) -> list[Chunk]:
        """Up to `most` chunks off the queue and batch_size records (or one chunk, if larger), without waiting."""
        chunks: list[Chunk] = []
        size = 0
        while size < self.batch_size and len(chunks) < most:
            if self._retry:
                chunk = self._retry.pop(0)
            else:
                try:
                    chunk = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._idle.clear()
            with self._queued_lock:
                self._queued -= len(chunk.raws)
            chunks.append(chunk)
            size += len(chunk.raws)
        return chunks

    def _write_or_outbox(self, chunks: list[Chunk]) -> None:
        # Keep order: while older records wait in the outbox, newer ones queue behind them there.
        to_mongo = self.mongo_ok and not self.outbox.has_pending()
        if to_mongo:
            try:
                self._write(chunks)
            except PyMongoError as exc:
                self._mark_down(exc)
                to_mongo = False
        if not to_mongo:
            try:
                self.stats.outboxed += self.outbox.append(*_entries(chunks))
            except OSError:
                self._retry[:0] = chunks  # still journaled: tried again after the backoff
                with self._queued_lock:
                    self._queued += sum(len(c.raws) for c in chunks)
                raise
        counts: dict[int, int] = {}
        for chunk in chunks:
            counts[chunk.segment] = counts.get(chunk.segment, 0) + len(chunk.raws)
        self.journal.done(counts)

    def _replay(self) -> bool:
        """Replay outbox files (and dead processes' journals) in order; True when nothing is left."""
        if not self.mongo_ok and not self._ping():
            return False
        try:
            self._apply_pending(self._db_factory())
        except PyMongoError as exc:
            self._mark_down(exc)
            return False
        for path in self.outbox.claim():
            written = 0
            try:
                for batch in Outbox.batches(path, self.batch_size):
                    self._write([Chunk(-1, coll, [doc], None) for coll, doc in batch])
                    written += len(batch)
            except PartialFile:
                self.outbox.quarantine(path)
                self.stats.replayed += written
                continue
            except PyMongoError as exc:
                self._mark_down(exc)
                if written:
                    self.outbox.keep_rest(path, written)
                self.stats.replayed += written
                return False  # what is left is claimed again next time
            path.unlink(missing_ok=True)
            self.stats.replayed += written
            log.info("replayed %d records from %s", written, path.name)
        return True

    def _ping(self) -> bool:
        try:
            self._db_factory().client.admin.command("ping")
        except PyMongoError as exc:
            self._mark_down(exc)
            return False
        if not self.mongo_ok:
            log.warning("MongoDB is reachable again; replaying the outbox")
        self.mongo_ok = True
        self.last_error = None
        return True

    def _mark_down(self, exc: Exception) -> None:
        if self.mongo_ok:
            log.warning("MongoDB unavailable, logging to the outbox at %s: %s", self.outbox.dir, exc)
        self.mongo_ok = False
        self.last_error = str(exc)[:300]
        self.stats.failures += 1

    def _write(self, chunks: list[Chunk]) -> None:
        """Insert the chunks' documents, then count the new predictions in the rollups.

        Counting happens once per insert, exactly: when the insert succeeded but the rollup update
        failed, the documents are in and stay in; their counts wait in `_pending` (with their seq, so a
        retry of an update that did land is ignored) and go before any later write.
        """
        db = self._db_factory()
        self._apply_pending(db)
        predictions = [c for c in chunks if c.collection == PREDICTIONS]
        feedback = [doc for c in chunks if c.collection == FEEDBACK for doc in c.documents()]
        for c in chunks:  # counts a stopped process could not apply (see close)
            if c.collection == ROLLUPS:
                for doc in c.documents():
                    pending = bson.decode(doc.raw if isinstance(doc, RawBSONDocument) else bson.encode(doc))
                    apply_rollups(db, pending["increments"], pending["writer"], pending["seq"])
        if predictions:
            docs = [doc for c in predictions for doc in c.documents()]
            known = all(c.increments is not None for c in predictions)
            given = merge_increments(c.increments for c in predictions if c.increments) if known else None
            new, increments = insert_predictions(db, docs, given)
            self.stats.written += new
            self.stats.duplicates += len(docs) - new
            self._seq += 1
            self._pending.append((self._seq, increments))
            try:
                self._apply_pending(db)
            except PyMongoError as exc:
                self._mark_down(exc)  # the documents are in: only their counts wait
        if feedback:
            db[FEEDBACK].bulk_write([ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in feedback])

    def _apply_pending(self, db: Database) -> None:
        while self._pending:
            seq, increments = self._pending[0]
            apply_rollups(db, increments, self.writer_id, seq)
            self._pending.pop(0)

    def pending_rollups(self) -> int:
        """Inserts whose counts are not in the rollups yet (MongoDB failed in between)."""
        return len(self._pending)

    # -- lifecycle ------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._wake.set()
            if self._queue.empty() and not self._retry and self._idle.wait(0.05) and self._queue.empty():
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue (to MongoDB, or to the outbox), then stop the writer. Safe to call twice."""
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._pending and not self._thread.is_alive():  # counts MongoDB never took: the next replay applies them
            docs = [{"writer": self.writer_id, "seq": seq, "increments": inc} for seq, inc in self._pending]
            try:
                self.outbox.append(b"".join(entry(ROLLUPS, doc) for doc in docs), len(docs))
                self._pending.clear()
            except OSError:
                log.exception("could not keep %d pending rollup updates in the outbox", len(docs))
        leftover: list[Chunk] = []
        while True:
            try:
                leftover.append(self._queue.get_nowait())
            except queue.Empty:
                break
        leftover[:0] = self._retry
        self._retry = []
        if leftover:
            try:
                self.stats.outboxed += self.outbox.append(*_entries(leftover))
            except OSError as exc:  # their journal segment stays, and the next process replays it
                log.error("could not write %d chunks to the outbox at shutdown: %s", len(leftover), exc)
            else:
                counts: dict[int, int] = {}
                for chunk in leftover:
                    counts[chunk.segment] = counts.get(chunk.segment, 0) + len(chunk.raws)
                self.journal.done(counts)
        try:
            self.journal.close()
        except OSError as exc:
            log.error("could not close the journal cleanly (the next process replays it): %s", exc)


@dataclass(frozen=True)
class Chunk:
    """The records of one submit, as the writer takes them: journal segment, collection, documents."""

    segment: int  # -1: replayed from a file, not in this process's journal
    collection: str
    raws: list[Any]  # encoded documents (bytes), or decoded ones when replayed
    increments: dict[str, dict[str, Any]] | None  # predictions: their rollups, when the submitter had them

    def documents(self) -> list[Mapping[str, Any]]:
        return [RawBSONDocument(raw) if isinstance(raw, bytes) else raw for raw in self.raws]


def _entries(chunks: list[Chunk]) -> tuple[bytes, int]:
    """Outbox entries for the chunks' documents, and how many."""
    wrapped = [wrap(c.collection, raw) if isinstance(raw, bytes) else entry(c.collection, raw)
               for c in chunks for raw in c.raws]  # fmt: skip
    return b"".join(wrapped), len(wrapped)
