"""Durability of the prediction log against the session's real MongoDB-wire server.

Write failures (a short write, a full disk) are injected by replacing os.write in the log module: the
only way to make a disk full on demand inside a unit test. `make test-faults` fills a real one.
"""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import pytest
from pymongo import MongoClient

from app import prediction_log
from app.prediction_log import HOST, Journal, LogUnavailable, Outbox, PredictionLog, entry
from model.ids import time_ordered_ids
from model.statistics import rollup_increments
from model.store import ROLLUPS, apply_rollups, window_statistics
from ops import services
from tests.app.conftest import wait_for


def records(n: int) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {"_id": i, "kind": "prediction", "ts": now, "model_name": "m", "model_version": "1", "label": 1,
         "confidence": 0.9, "probabilities": [0.1, 0.9], "latency_ms": 1.0, "source": "predict"}
        for i in time_ordered_ids(n)
    ]  # fmt: skip


class Holder:
    """A database that can be made unreachable and reachable again."""

    def __init__(self, db) -> None:
        self.db = db
        self.dead = MongoClient(f"mongodb://127.0.0.1:{services.free_port()}", serverSelectionTimeoutMS=200)["x"]
        self.down = False

    def __call__(self):
        return self.dead if self.down else self.db


def all_parse(directory: Path) -> int:
    """Entries in every log file under `directory`; fails if any file holds a partial record."""
    total = 0
    for path in directory.glob("*.bson"):
        with path.open("rb") as fh:
            total += sum(1 for _ in bson.decode_file_iter(fh))
    return total


def test_short_writes_are_completed(db, tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(prediction_log.os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    plog = PredictionLog(lambda: db, tmp_path, flush_seconds=0.05)
    plog.start()
    batch = records(50)
    plog.submit(batch)
    assert all_parse(tmp_path) == 50, "the journal holds whole records only"
    assert plog.flush()
    plog.close()
    assert db.predictions.count_documents({"_id": {"$in": [r["_id"] for r in batch]}}) == 50


def test_a_full_disk_refuses_the_request_and_leaves_no_partial_record(db, tmp_path, monkeypatch):
    plog = PredictionLog(lambda: db, tmp_path, flush_seconds=0.05)
    plog.start()
    first, refused, after = records(10), records(10), records(10)
    plog.submit(first)
    real = os.write

    def full(fd: int, data) -> int:
        real(fd, bytes(data[: len(data) // 2]))  # half of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prediction_log.os, "write", full)
    with pytest.raises(LogUnavailable, match="No space left"):
        plog.submit(refused)
    monkeypatch.setattr(prediction_log.os, "write", real)
    assert all_parse(tmp_path) == 10, "the half-written record was cut off"
    plog.submit(after)
    assert plog.flush()
    plog.close()
    stored = {d["_id"] for d in db.predictions.find({}, {"_id": 1})}
    assert {r["_id"] for r in first + after} <= stored
    assert not {r["_id"] for r in refused} & stored, "what was refused is not stored"


def test_a_full_disk_answers_503_not_200(client, app, monkeypatch):
    def full(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prediction_log.os, "write", full)
    response = client.post("/predict", json={"instances": [[0.0] * 64]})
    assert response.status_code == 503, response.json
    assert response.json["error"] == "log_unavailable"


def test_a_failed_segment_open_leaves_no_stale_descriptor(tmp_path, monkeypatch):
    journal = Journal(tmp_path, "tok", segment_bytes=10)
    journal.append([entry("predictions", {"_id": "a"})])
    real_open = os.open
    monkeypatch.setattr(prediction_log.os, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EMFILE, "x")))
    with pytest.raises(LogUnavailable):
        journal.append([entry("predictions", {"_id": "b"})])  # rotation: the old fd is closed, the open fails
    monkeypatch.setattr(prediction_log.os, "open", real_open)
    victim = tmp_path / "victim"
    fd = os.open(victim, os.O_WRONLY | os.O_CREAT)  # takes the lowest free number: the closed segment's
    try:
        journal.append([entry("predictions", {"_id": "c"})])
    finally:
        os.close(fd)
    assert victim.read_bytes() == b"", "the journal wrote into another file through a stale descriptor"
    assert all_parse(tmp_path) == 2


def test_a_file_that_does_not_parse_is_quarantined_not_deleted(db, tmp_path):
    good = records(3)
    path = tmp_path / "outbox-123-deadbeef.bson"
    path.write_bytes(b"".join(entry("predictions", r) for r in good) + entry("predictions", records(1)[0])[:-9])
    size = path.stat().st_size
    plog = PredictionLog(lambda: db, tmp_path)
    assert plog._replay()
    assert db.predictions.count_documents({"_id": {"$in": [r["_id"] for r in good]}}) == 3
    kept = list(tmp_path.glob("quarantine-*.bson"))
    assert len(kept) == 1 and kept[0].stat().st_size == size, "kept whole, for a person to look at"
    assert not path.exists()


def test_the_writer_survives_a_failing_outbox_and_loses_nothing(db, tmp_path, monkeypatch):
    holder = Holder(db)
    plog = PredictionLog(holder, tmp_path, flush_seconds=0.05, retry_seconds=0.1)
    plog.start()
    holder.down = True
    real = Outbox.append
    monkeypatch.setattr(Outbox, "append", lambda self, *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    batch = records(20)
    plog.submit(batch)
    wait_for(lambda: plog.writer_error is not None, message="the writer to report its failure")
    assert plog.alive(), "the writer thread died"
    monkeypatch.setattr(Outbox, "append", real)
    holder.down = False
    wait_for(lambda: db.predictions.count_documents({"_id": {"$in": [r["_id"] for r in batch]}}) == 20, 20)
    wait_for(lambda: plog.writer_error is None, message="the writer to recover")
    plog.close()


def test_an_outbox_at_its_cap_refuses_and_keeps_what_it_acknowledged(db, tmp_path):
    holder = Holder(db)
    plog = PredictionLog(holder, tmp_path, flush_seconds=0.05, retry_seconds=0.1, max_outbox_bytes=20_000)
    plog.start()
    holder.down = True
    acknowledged, refused = [], 0
    for _ in range(200):
        batch = records(5)
        try:
            plog.submit(batch)
            acknowledged += batch
        except LogUnavailable as exc:
            assert "LOG_MAX_OUTBOX_BYTES" in str(exc)
            refused += 1
        plog.flush(0.5)
    assert refused > 0 and acknowledged
    holder.down = False
    ids = [r["_id"] for r in acknowledged]
    wait_for(lambda: db.predictions.count_documents({"_id": {"$in": ids}}) == len(ids), 30, "the outbox to drain")
    plog.close()


def test_files_of_other_hosts_are_left_alone_and_an_earlier_boot_is_dead(tmp_path):
    dead_pid = 4_000_000  # above pid_max: no such process
    other_host = f"h{'0' * 8}b{'0' * 6}"
    earlier_boot = HOST[:9] + "b" + "f" * 6 if not HOST.endswith("f" * 6) else HOST[:9] + "b" + "0" * 6
    ours_alive = f"journal-{HOST}-{os.getppid()}-aaaaaaaa-000000.bson"
    names = {
        f"journal-{other_host}-{dead_pid}-aaaaaaaa-000000.bson": False,  # another container's: not ours
        f"journal-{earlier_boot}-{os.getppid()}-aaaaaaaa-000000.bson": True,  # same host, earlier boot: dead
        f"outbox-{dead_pid}-bbbbbbbb.bson": True,  # a name from before hosts were recorded, dead pid
        ours_alive: False,  # a live process on this host
    }
    for name in names:
        (tmp_path / name).write_bytes(entry("predictions", {"_id": name}))
    claimed = Outbox(tmp_path, "cccccccc").claim()
    assert len(claimed) == sum(names.values())
    for name, taken in names.items():
        assert (tmp_path / name).exists() is not taken, name


class RollupsDown:
    """The real database, except that its rollups collection lives on a server that is not there."""

    def __init__(self, db) -> None:
        self.db = db
        self.client = db.client
        self.name = db.name
        self.dead = Holder(db).dead
        self.down = True

    def __getitem__(self, name: str):
        return self.dead[name] if name == ROLLUPS and self.down else self.db[name]

    def __call__(self):
        return self


def test_counts_of_an_insert_whose_rollup_update_failed_arrive_once(db, tmp_path):
    """Issue #15, item 9: 500 records went in, their rollup update failed, and /statistics said 0."""
    split = RollupsDown(db)
    plog = PredictionLog(split, tmp_path, flush_seconds=0.05, retry_seconds=0.1)
    plog.start()
    batch = records(500)
    plog.submit(batch)
    wait_for(lambda: db.predictions.count_documents({"_id": {"$in": [r["_id"] for r in batch]}}) == 500)
    wait_for(lambda: plog.pending_rollups() > 0, message="the failed rollup update to be kept")
    assert window_statistics(db, datetime.now(UTC) - timedelta(hours=1))["total"] == 0
    split.down = False
    wait_for(lambda: plog.pending_rollups() == 0, 20, "the kept rollup update to be applied")
    plog.submit(records(3))  # later inserts count on top, nothing twice
    plog.flush()
    assert window_statistics(db, datetime.now(UTC) - timedelta(hours=1))["total"] == 503
    plog.close()


def test_rollup_updates_still_pending_at_shutdown_are_applied_by_the_next_process(db, tmp_path):
    split = RollupsDown(db)
    first = PredictionLog(split, tmp_path, flush_seconds=0.05, retry_seconds=0.1)
    first.start()
    first.submit(records(100))
    wait_for(lambda: first.pending_rollups() > 0)
    first.close(timeout=2)
    assert first.pending_rollups() == 0, "kept in the outbox"
    second = PredictionLog(lambda: db, tmp_path, flush_seconds=0.05, retry_seconds=0.1)
    second.start()
    wait_for(lambda: window_statistics(db, datetime.now(UTC) - timedelta(hours=1))["total"] == 100, 20)
    second.close()
    assert window_statistics(db, datetime.now(UTC) - timedelta(hours=1))["total"] == 100


def test_a_rollup_update_is_applied_once_however_often_it_is_sent(db):
    first = rollup_increments(records(7))
    second = rollup_increments(records(5))
    apply_rollups(db, first, "w", 1)
    apply_rollups(db, first, "w", 1)  # a retry of an update that had landed
    apply_rollups(db, second, "w", 2)
    apply_rollups(db, first, "w", 1)  # a late retry, after a newer one
    apply_rollups(db, second, "other-writer", 1)
    assert window_statistics(db, datetime.now(UTC) - timedelta(hours=1))["total"] == 7 + 5 + 5
