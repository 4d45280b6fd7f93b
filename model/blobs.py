"""Files that cross hosts, in MongoDB GridFS (an adapter: this module does I/O with the database it is handed).

A data snapshot is written by `ingest` on one Airflow worker and read by `train` and `validate` on
others; a batch upload is written by an app replica and scored by a worker, whose result the app
then serves. No host shares a disk with another, so these files live in GridFS, not under `var/`.

Why GridFS and not MLflow artifacts: MongoDB is the one store every host (each app replica and each
worker) already reaches with write access; the app has no MLflow write path; a user's batch files
and predictions must not go to a hosted registry (DagsHub); and a snapshot exists before any MLflow
run. Buckets (each is `<bucket>.files` + `<bucket>.chunks`): `snapshots` (model/snapshot.py) and
`batch_files` (each batch's upload and result, below).

Every file carries the SHA-256 of its bytes (in its metadata, or in the record that names it), and
`read` checks it, so a reader never uses bytes other than those written. The MongoDB-wire server of
the local stack (secantusd) was checked for what GridFS needs: the unique `files_id, n` index on
`<bucket>.chunks`, `find` with sort, deletes and duplicate-key errors on `_id`; no workaround needed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from gridfs import GridFSBucket, GridOut
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.database import Database

log = logging.getLogger(__name__)

SNAPSHOTS = "snapshots"
BATCH_FILES = "batch_files"
READ_BLOCK = 1 << 20
_BATCH_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RESULT = "result.csv"


class StoredFileError(Exception):
    """A stored file cannot be used: see the subclasses."""


class StoredFileMissing(StoredFileError, LookupError):
    """No such file in the bucket (never written, deleted, or expired)."""


class StoredFileCorrupt(StoredFileError, ValueError):
    """The stored bytes are not the ones written: a chunk is missing or the SHA-256 differs."""


def bucket(db: Database, name: str) -> GridFSBucket:
    return GridFSBucket(db, bucket_name=name)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(
    db: Database, name: str, filename: str, data: bytes | IO[bytes], metadata: dict[str, Any], file_id: Any = None
) -> Any:
    """Store `data` (bytes or a binary file) and return its id; the metadata gains the bytes' `sha256`.

    With `file_id`, a second write of the same id raises gridfs.errors.FileExists and stores nothing.
    """
    digest = sha256(data) if isinstance(data, bytes) else sha256_of(data)
    meta = {**metadata, "sha256": digest}
    fs = bucket(db, name)
    if file_id is None:
        return fs.upload_from_stream(filename, data, metadata=meta)
    fs.upload_from_stream_with_id(file_id, filename, data, metadata=meta)
    return file_id


def read(db: Database, name: str, file_id: Any, what: str, expected_sha256: str | None = None) -> bytes:
    """The file's bytes, checked against `expected_sha256` (else the sha256 recorded in its metadata)."""
    try:
        stream = bucket(db, name).open_download_stream(file_id)
        data = stream.read()
    except NoFile as exc:
        raise StoredFileMissing(f"{what} is not in MongoDB (GridFS bucket '{name}', file {file_id})") from exc
    except CorruptGridFile as exc:
        raise StoredFileCorrupt(f"{what} is corrupt in MongoDB (GridFS bucket '{name}'): {exc}") from exc
    expected = expected_sha256 or (stream.metadata or {}).get("sha256")
    if expected is None:
        raise StoredFileCorrupt(f"{what} has no recorded sha256 in GridFS bucket '{name}': it was not stored by us")
    if sha256(data) != expected:
        raise StoredFileCorrupt(
            f"{what} is corrupt in MongoDB (GridFS bucket '{name}'): its bytes hash to {sha256(data)[:12]}..., "
            f"{expected[:12]}... was recorded"
        )
    return data


def delete(db: Database, name: str, file_id: Any) -> None:
    """Delete a file; one already gone is not an error."""
    try:
        bucket(db, name).delete(file_id)
    except NoFile:
        pass


def sha256_of(stream: IO[bytes]) -> str:
    """The SHA-256 of a binary file from its current position, which it is put back to."""
    start = stream.tell()
    h = hashlib.sha256()
    while block := stream.read(READ_BLOCK):
        h.update(block)
    stream.seek(start)
    return h.hexdigest()


# Batch files: `<batch id>/input.<format>` (written once by the app, with that id) and
# `<batch id>/result.csv` (written by each successful score run; the newest is served).


def batch_file_name(batch_id: str, name: str) -> str:
    """`<batch id>/<name>`, built from a validated id: a name is never taken from a MongoDB document."""
    if not _BATCH_ID.match(batch_id) or "/" in name or name.startswith("."):
        raise ValueError(f"not a batch file: {batch_id}/{name}")
    return f"{batch_id}/{name}"


def store_batch_input(db: Database, batch_id: str, fmt: str, data: bytes) -> str:
    """The uploaded file of a new batch, under the id `<batch id>/input.<fmt>`."""
    name = batch_file_name(batch_id, f"input.{fmt}")
    return str(put(db, BATCH_FILES, name, data, {"batch_id": batch_id, "role": "input"}, file_id=name))


def read_batch_input(db: Database, batch_id: str, fmt: str) -> bytes:
    name = batch_file_name(batch_id, f"input.{fmt}")
    return read(db, BATCH_FILES, name, f"the uploaded file of batch {batch_id}")


def delete_batch_files(db: Database, batch_id: str) -> None:
    """Every stored file of a batch (an upload whose batch could not be recorded)."""
    for doc in bucket(db, BATCH_FILES).find({"metadata.batch_id": batch_id}):
        delete(db, BATCH_FILES, doc._id)


def store_batch_result(db: Database, batch_id: str, result: IO[bytes]) -> Any:
    """The result file of a score run; an earlier run's result of the same batch is then deleted."""
    name = batch_file_name(batch_id, RESULT)
    file_id = put(db, BATCH_FILES, name, result, {"batch_id": batch_id, "role": "result"})
    for doc in bucket(db, BATCH_FILES).find({"filename": name, "_id": {"$ne": file_id}}):
        delete(db, BATCH_FILES, doc._id)
    return file_id


def open_batch_result(db: Database, batch_id: str) -> GridOut | None:
    """The newest result of a batch, to stream, or None once it has expired."""
    name = batch_file_name(batch_id, RESULT)
    found = list(bucket(db, BATCH_FILES).find({"filename": name}).sort("uploadDate", -1).limit(1))
    return found[0] if found else None


def stream(file: GridOut, what: str) -> Iterator[bytes]:
    """A stored file's bytes in blocks, checked against the SHA-256 recorded when it was stored.

    Each block is held back until the next one is read, and the last one until the digest matched, so
    a file whose bytes changed is cut short (the client sees fewer bytes than Content-Length) and ends
    with StoredFileCorrupt, as does a missing chunk. The file is closed however the stream ends.
    """
    expected = (file.metadata or {}).get("sha256")
    digest = hashlib.sha256()
    try:
        held = file.read(READ_BLOCK)
        while held:
            block = file.read(READ_BLOCK)
            digest.update(held)
            if not block and digest.hexdigest() != expected:
                raise StoredFileCorrupt(
                    f"{what} is corrupt in MongoDB (GridFS bucket '{BATCH_FILES}'): its bytes do not have "
                    "the SHA-256 recorded when it was stored"
                )
            yield held
            held = block
    except CorruptGridFile as exc:
        raise StoredFileCorrupt(f"{what} is corrupt in MongoDB (GridFS bucket '{BATCH_FILES}'): {exc}") from exc
    finally:
        file.close()


def expire_batch_files(db: Database, retention_days: float, now: datetime | None = None) -> int:
    """Delete batch files uploaded more than `retention_days` ago; how many were deleted."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    expired = [doc._id for doc in bucket(db, BATCH_FILES).find({"uploadDate": {"$lt": cutoff}})]
    for file_id in expired:
        delete(db, BATCH_FILES, file_id)
    if expired:
        log.info("deleted %d batch files older than %s days", len(expired), retention_days)
    return len(expired)


def batch_bytes(db: Database) -> int:
    """Bytes held by all stored batch files (what MAX_BATCHES_BYTES bounds)."""
    total = list(db[f"{BATCH_FILES}.files"].aggregate([{"$group": {"_id": None, "bytes": {"$sum": "$length"}}}]))
    return int(total[0]["bytes"]) if total else 0
