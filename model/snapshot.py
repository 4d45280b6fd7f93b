"""Immutable, content-addressed data snapshots in MongoDB GridFS, with a local read-through cache (an adapter).

A snapshot is named by its digest (the hash of its content and split). Its parts (`train`/`holdout`
as .npz or .parquet, `schema.json`, `profile.json`, `manifest.json`) are files in the GridFS bucket
`snapshots` (model/blobs.py says why GridFS), and one empty file with `_id` = the digest commits
them: its metadata lists each part's file id, length and SHA-256. That record is inserted once (a
duplicate `_id` is refused), so concurrent writers of the same content leave one copy, and a reader
finds either nothing or a whole snapshot. Each host keeps what it read under
`<data dir>/snapshots/<digest>/`, checked against the record at every use: correctness never
depends on that cache, and a host with an empty data directory reads from MongoDB.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from gridfs.errors import FileExists
from pymongo.database import Database

from model import blobs
from model.data import Dataset

log = logging.getLogger(__name__)
_DIGEST = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$")
_ORPHAN_AGE = timedelta(hours=1)  # parts of an unfinished write older than this are deleted


class SnapshotNotFound(LookupError):
    """No snapshot with this digest in MongoDB."""


class SnapshotCorrupt(ValueError):
    """A stored snapshot's parts are missing or not the bytes recorded."""


# the only names a part may have: a record in MongoDB never chooses a local file name
PARTS = frozenset(
    {"train.npz", "train.parquet", "holdout.npz", "holdout.parquet", "schema.json", "profile.json", "manifest.json"}
)


@dataclass(frozen=True)
class Snapshot:
    path: Path  # this host's verified copy
    hash: str
    train: Dataset
    holdout: Dataset
    profile: dict[str, Any]
    manifest: dict[str, Any]
    schema: dict[str, Any] | None = None  # tabular snapshots only

    @property
    def task(self) -> str:
        """The task kind's name (model/kinds/)."""
        return str(self.manifest.get("task", "image"))

    @property
    def task_type(self) -> str:
        """classification, or regression for a numeric target (model/regression.py)."""
        return str((self.schema or {}).get("task_type", "classification"))

    @property
    def labels(self) -> list[Any]:
        if "labels" in self.manifest:
            return list(self.manifest["labels"])
        return np.unique(self.train.y).tolist()  # snapshots written before labels were recorded


def check_digest(digest: Any) -> str:
    """A snapshot digest as a run's conf or an Asset event may carry it; anything else is refused."""
    if not isinstance(digest, str) or not _DIGEST.match(digest) or ".." in digest:
        raise ValueError(f"{digest!r} is not a snapshot digest (what ingest_data returns as 'hash')")
    return digest


def write_snapshot(
    db: Database,
    root: Path,
    digest: str,
    train: Dataset,
    holdout: Dataset,
    profile: dict[str, Any],
    manifest: dict[str, Any],
    schema: dict[str, Any] | None = None,
) -> Path:
    """Store snapshot `digest` in MongoDB once and return this host's copy (under `root/snapshots`).

    A whole stored snapshot of that digest is kept as it is (one copy, nothing written); one whose
    parts do not verify is replaced.
    """
    check_digest(digest)
    try:
        return fetch_snapshot(db, root, digest)
    except SnapshotNotFound:
        pass
    except SnapshotCorrupt as exc:
        log.warning("%s: writing it anew", exc)
        delete_snapshot(db, digest)
    cache = _cache_dir(root, digest)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{digest[:12]}-", dir=cache.parent) as tmp:
        folder = Path(tmp)
        _serialize(folder, digest, train, holdout, profile, manifest, schema)
        parts = []
        for path in sorted(folder.iterdir()):
            with path.open("rb") as f:
                file_id = blobs.put(db, blobs.SNAPSHOTS, f"{digest}/{path.name}", f, _part_meta(digest, path.name))
            size = path.stat().st_size
            parts.append({"name": path.name, "id": file_id, "sha256": _file_sha256(path), "length": size})
        try:  # the commit: one empty file whose _id is the digest, inserted once
            blobs.put(db, blobs.SNAPSHOTS, digest, b"", {"snapshot": digest, "role": "snapshot", "parts": parts},
                      file_id=digest)  # fmt: skip
        except FileExists:
            log.info("snapshot %s was stored by a concurrent writer: keeping its copy", digest)
            for part in parts:
                blobs.delete(db, blobs.SNAPSHOTS, part["id"])
            return fetch_snapshot(db, root, digest)
        cache.mkdir(exist_ok=True)
        for path in folder.iterdir():
            os.replace(path, cache / path.name)
    _delete_orphans(db)
    log.info("snapshot %s stored in MongoDB (%d parts)", digest, len(parts))
    return cache


def fetch_snapshot(db: Database, root: Path, digest: str) -> Path:
    """This host's copy of snapshot `digest` (`root/snapshots/<digest>`), each part checked against
    the record in MongoDB: cached files that match are kept, the others are downloaded and verified."""
    check_digest(digest)
    record = db[f"{blobs.SNAPSHOTS}.files"].find_one({"_id": digest, "metadata.role": "snapshot"})
    if record is None:
        raise SnapshotNotFound(
            f"no snapshot {digest} in MongoDB (GridFS bucket '{blobs.SNAPSHOTS}'): run ingest_data to write one"
        )
    parts = record["metadata"].get("parts") or []
    names = [part.get("name") for part in parts]
    if not parts or any(name not in PARTS for name in names) or "manifest.json" not in names:
        raise SnapshotCorrupt(f"snapshot {digest}'s record in MongoDB lists parts {names}, not a snapshot's")
    cache = _cache_dir(root, digest)
    cache.mkdir(parents=True, exist_ok=True)
    for child in cache.iterdir():
        if child.name not in names and not child.name.startswith("."):
            child.unlink()  # nothing but the recorded parts may be read from a snapshot's folder
    for part in parts:
        local = cache / part["name"]
        if local.is_file() and _file_sha256(local) == part["sha256"]:
            continue
        what = f"part {part['name']} of snapshot {digest}"
        try:
            data = blobs.read(db, blobs.SNAPSHOTS, part["id"], what, expected_sha256=part["sha256"])
        except blobs.StoredFileError as exc:
            raise SnapshotCorrupt(f"{exc}; run ingest_data again, which stores the snapshot anew") from exc
        _write_private(local, data)
    return cache


def latest_snapshot(db: Database) -> str | None:
    """The digest of the snapshot stored last, or None when there is none."""
    newest = db[f"{blobs.SNAPSHOTS}.files"].find({"metadata.role": "snapshot"}, {"_id": 1}).sort("uploadDate", -1)
    for record in newest.limit(1):
        return str(record["_id"])
    return None


def delete_snapshot(db: Database, digest: str) -> None:
    """Remove a snapshot from MongoDB: its record first, so no reader starts on a half-deleted one."""
    blobs.delete(db, blobs.SNAPSHOTS, check_digest(digest))
    for doc in blobs.bucket(db, blobs.SNAPSHOTS).find({"metadata.snapshot": digest}):
        blobs.delete(db, blobs.SNAPSHOTS, doc._id)


def read_snapshot(path: Path) -> Snapshot:
    """A snapshot from a local folder (what `fetch_snapshot` returns)."""
    manifest = json.loads((path / "manifest.json").read_text())
    schema = path / "schema.json"
    return Snapshot(
        path=path,
        hash=manifest["hash"],
        train=_read_part(path, "train"),
        holdout=_read_part(path, "holdout"),
        profile=json.loads((path / "profile.json").read_text()),
        manifest=manifest,
        schema=json.loads(schema.read_text()) if schema.exists() else None,
    )


def _serialize(
    folder: Path,
    digest: str,
    train: Dataset,
    holdout: Dataset,
    profile: dict[str, Any],
    manifest: dict[str, Any],
    schema: dict[str, Any] | None,
) -> None:
    for name, part in (("train", train), ("holdout", holdout)):
        if hasattr(part.X, "columns"):  # a frame keeps its column types in Parquet; arrays go to npz
            _write_table(folder / f"{name}.parquet", part)
        else:
            np.savez_compressed(folder / f"{name}.npz", X=part.X, y=part.y)
    (folder / "schema.json").write_text(json.dumps(schema, indent=2))  # null for a kind without one
    (folder / "profile.json").write_text(json.dumps(profile))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "hash": digest}, indent=2, default=str))
    for child in folder.iterdir():
        child.chmod(0o444)


def _part_meta(digest: str, name: str) -> dict[str, Any]:
    return {"snapshot": digest, "role": "part", "part": name}


def _delete_orphans(db: Database) -> None:
    """Parts no record names (a writer died before its commit, or lost a race), once they are old enough
    that their writer cannot still be at work."""
    cutoff = datetime.now(UTC) - _ORPHAN_AGE
    files = db[f"{blobs.SNAPSHOTS}.files"]
    for doc in files.find({"metadata.role": "part", "uploadDate": {"$lt": cutoff}}, {"metadata": 1}):
        record = files.find_one({"_id": doc["metadata"]["snapshot"], "metadata.role": "snapshot"})
        if record is None or doc["_id"] not in [part["id"] for part in record["metadata"]["parts"]]:
            blobs.delete(db, blobs.SNAPSHOTS, doc["_id"])


def _cache_dir(root: Path, digest: str) -> Path:
    return root / "snapshots" / digest


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return blobs.sha256_of(f)


def _write_private(path: Path, data: bytes) -> None:
    """Write a cached part whole (a temporary name, then a rename), read-only, as the original was."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.chmod(0o444)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_part(path: Path, name: str) -> Dataset:
    if (path / f"{name}.parquet").exists():
        return _read_table(path / f"{name}.parquet")
    with np.load(path / f"{name}.npz") as part:
        return Dataset(X=part["X"], y=part["y"])


_TARGET = "__target__"


def _write_table(path: Path, data: Dataset) -> None:
    frame = data.X.assign(**{_TARGET: list(data.y)})
    frame.to_parquet(path, index=False)


def _read_table(path: Path) -> Dataset:
    import pandas as pd

    from model.tabular import with_nan

    frame = with_nan(pd.read_parquet(path))
    y = frame.pop(_TARGET).to_numpy()
    if y.dtype == object and all(isinstance(v, int) for v in y):
        y = y.astype(np.int64)
    return Dataset(X=frame, y=y)
