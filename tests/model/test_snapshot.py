"""Snapshots in MongoDB GridFS: one copy per digest, verified reads, any host's empty data directory (issue #17)."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from model import snapshot as snapshots
from model.data import Dataset

DIGEST = "0123456789abcdef-s42-h20"


def parts(n: int = 400, frame: bool = False) -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng(0)
    X = rng.random((n, 8))
    y = rng.integers(0, 3, n)
    if frame:
        X = pd.DataFrame(X, columns=[f"c{i}" for i in range(8)]).assign(region=["north", "south"] * (n // 2))
    return Dataset(X=X[: n // 2], y=y[: n // 2]), Dataset(X=X[n // 2 :], y=y[n // 2 :])


def write(db, root, digest: str = DIGEST, frame: bool = False):
    train, holdout = parts(frame=frame)
    manifest = {"source": "test", "task": "image", "labels": [0, 1, 2]}
    return snapshots.write_snapshot(db, root, digest, train, holdout, {"bins": [1, 2]}, manifest)


def stored(db) -> list[dict]:
    return list(db["snapshots.files"].find())


@pytest.mark.parametrize("frame", [False, True])
def test_a_host_with_an_empty_data_dir_reads_what_another_wrote(db, tmp_path, frame):
    write(db, tmp_path / "ingest-host", frame=frame)
    path = snapshots.fetch_snapshot(db, tmp_path / "train-host", DIGEST)
    assert path == tmp_path / "train-host" / "snapshots" / DIGEST
    snap = snapshots.read_snapshot(path)
    train, holdout = parts(frame=frame)
    assert snap.hash == DIGEST and snap.labels == [0, 1, 2] and snap.profile == {"bins": [1, 2]}
    assert np.asarray(snap.train.X)[:, :8].astype(float).tolist() == np.asarray(train.X)[:, :8].astype(float).tolist()
    assert snap.holdout.y.tolist() == holdout.y.tolist()
    assert snapshots.latest_snapshot(db) == DIGEST


def test_the_same_digest_written_twice_is_one_copy(db, tmp_path):
    write(db, tmp_path / "a")
    before = stored(db)
    write(db, tmp_path / "b")  # another host, the same content
    assert stored(db) == before, "nothing is written the second time"
    assert len([f for f in before if f["metadata"]["role"] == "snapshot"]) == 1


def test_concurrent_writers_of_the_same_content_leave_one_copy(db, tmp_path):
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            write(db, tmp_path / f"host{i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = stored(db)
    (record,) = [f for f in files if f["metadata"]["role"] == "snapshot"]
    kept = {part["id"] for part in record["metadata"]["parts"]}
    assert {f["_id"] for f in files if f["metadata"]["role"] == "part"} == kept, "the losers removed their parts"
    assert db["snapshots.chunks"].distinct("files_id") and set(db["snapshots.chunks"].distinct("files_id")) <= kept
    for i in range(4):
        assert snapshots.read_snapshot(snapshots.fetch_snapshot(db, tmp_path / f"host{i}", DIGEST)).hash == DIGEST


def part_id(db, name: str):
    record = db["snapshots.files"].find_one({"_id": DIGEST})
    return next(p["id"] for p in record["metadata"]["parts"] if p["name"] == name)


def altered_chunk(db, name: str) -> None:
    db["snapshots.chunks"].update_one({"files_id": part_id(db, name), "n": 0}, {"$set": {"data": b"x" * 10}})


def lost_chunks(db, name: str) -> None:
    db["snapshots.chunks"].delete_many({"files_id": part_id(db, name)})


def lost_file(db, name: str) -> None:
    db["snapshots.files"].delete_one({"_id": part_id(db, name)})


def same_length_other_bytes(db, name: str) -> None:
    chunk = db["snapshots.chunks"].find_one({"files_id": part_id(db, name), "n": 0})
    data = bytes(chunk["data"])
    db["snapshots.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": data[:-1] + bytes([data[-1] ^ 1])}})


@pytest.mark.parametrize(
    ("damage", "name", "says"),
    [
        (altered_chunk, "train.npz", "is corrupt in MongoDB"),
        (lost_chunks, "holdout.npz", "is corrupt in MongoDB .*no chunk"),
        (lost_file, "profile.json", "is not in MongoDB"),
        (same_length_other_bytes, "manifest.json", "is corrupt in MongoDB .*its bytes hash to"),
    ],
)
def test_a_corrupt_or_missing_part_is_a_clear_error_and_ingest_repairs_it(db, tmp_path, damage, name, says):
    write(db, tmp_path / "a")
    damage(db, name)
    with pytest.raises(snapshots.SnapshotCorrupt, match=rf"part {name} of snapshot {DIGEST} {says}.*ingest_data again"):
        snapshots.fetch_snapshot(db, tmp_path / "b", DIGEST)

    write(db, tmp_path / "c")  # the next ingest of that content stores it anew
    assert snapshots.read_snapshot(snapshots.fetch_snapshot(db, tmp_path / "d", DIGEST)).hash == DIGEST
    assert len([f for f in stored(db) if f["metadata"]["role"] == "snapshot"]) == 1


def test_an_unknown_digest_or_a_path_is_refused(db, tmp_path):
    with pytest.raises(snapshots.SnapshotNotFound, match="no snapshot fedcba9876543210-s1-h20 in MongoDB"):
        snapshots.fetch_snapshot(db, tmp_path, "fedcba9876543210-s1-h20")
    for bad in ("../../etc", "/etc/passwd", "a/b", "", None):
        with pytest.raises(ValueError, match="is not a snapshot digest"):
            snapshots.fetch_snapshot(db, tmp_path, bad)  # type: ignore[arg-type]
    assert snapshots.latest_snapshot(db) is None


def test_the_cache_is_checked_not_trusted(db, tmp_path):
    write(db, tmp_path / "a")
    cached = snapshots.fetch_snapshot(db, tmp_path / "b", DIGEST)
    (cached / "manifest.json").chmod(0o644)
    (cached / "manifest.json").write_text('{"hash": "tampered"}')
    (cached / "train.parquet").write_text("left behind")  # a file no record names is not read
    again = snapshots.read_snapshot(snapshots.fetch_snapshot(db, tmp_path / "b", DIGEST))
    assert again.hash == DIGEST and not (cached / "train.parquet").exists()


def test_the_newest_snapshot_is_the_one_stored_last(db, tmp_path):
    write(db, tmp_path, "aaaaaaaaaaaaaaaa-s1-h20")
    write(db, tmp_path, "bbbbbbbbbbbbbbbb-s1-h20")
    assert snapshots.latest_snapshot(db) == "bbbbbbbbbbbbbbbb-s1-h20"
