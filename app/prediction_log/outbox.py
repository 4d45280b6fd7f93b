"""The outbox: append-only, fsync'ed BSON files, one per process; any process replays a dead one's."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import bson
from bson.raw_bson import RawBSONDocument

from app.prediction_log.files import (
    HOST,
    RAW,
    PartialFile,
    alive,
    entry,
    file_name,
    mtime,
    owner,
    size,
    truncate,
    write_all,
)

log = logging.getLogger(__name__)


class Outbox:
    """Append-only BSON files, one per process; any process may replay a dead process's file."""

    def __init__(self, directory: Path, token: str) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.path = self.dir / file_name("outbox", token)
        self._lock = threading.Lock()

    def append(self, entries: bytes, count: int) -> int:
        """Append `count` encoded entries (see `entry`) and fsync before returning; returns count."""
        if not entries:
            return 0
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                start = os.fstat(fd).st_size
                try:
                    write_all(fd, entries)
                    os.fsync(fd)
                except OSError:
                    truncate(fd, start)  # no partial record left behind for the replay to trip on
                    raise
            finally:
                os.close(fd)
        return count

    def claim(self) -> list[Path]:
        """Take every outbox or journal file that is ours to replay or whose writer is gone, oldest first."""
        claimed = []
        names = ("outbox-*.bson", "replay-*.bson", "journal-*.bson")
        candidates = [p for pattern in names for p in self.dir.glob(pattern)]
        for path in sorted(candidates, key=mtime):
            kind, host, pid, token = owner(path.name)
            mine = host == HOST and pid == os.getpid() and token == self.token
            if kind == "journal" and (mine or self._writeralive(host, pid, token)):
                continue  # a live process's write-ahead journal, not an outbox
            if kind in ("outbox", "replay") and not mine and self._writeralive(host, pid, token):
                continue
            target = self.dir / file_name("replay", self.token, uuid.uuid4().hex[:8])
            with self._lock:
                try:
                    path.rename(target)
                except FileNotFoundError:
                    continue  # another process claimed it first
            claimed.append(target)
        return claimed

    def _writeralive(self, host: str, pid: int, token: str) -> bool:
        """Whether the process that wrote a file may still be writing it.

        Another machine's or container's file (another hostname) is taken to be alive: its pid means
        nothing here, so it is never claimed (give each replica its own directory). Our hostname from
        an earlier boot: dead. Otherwise the pid decides; our own pid with another token is a dead
        process whose pid we reuse.
        """
        if host[:9] != HOST[:9]:
            return True
        if host != HOST:
            return False
        if pid == os.getpid():
            return token == self.token
        return alive(pid)

    def has_pending(self) -> bool:
        return any(size(p) for pattern in ("outbox-*.bson", "replay-*.bson") for p in self.dir.glob(pattern))

    def pending(self) -> int:
        """Bytes waiting for MongoDB in outbox files (journals excluded: they are write-ahead copies)."""
        return sum(size(p) for pattern in ("outbox-*.bson", "replay-*.bson") for p in self.dir.glob(pattern))

    @staticmethod
    def batches(path: Path, size: int, skip: int = 0) -> Iterator[list[tuple[str, RawBSONDocument]]]:
        """The file's (collection, document) entries, `size` at a time, after the first `skip`, undecoded.

        Raises PartialFile after the last good entry when the rest of the file does not parse.
        """
        batch: list[tuple[str, RawBSONDocument]] = []
        with path.open("rb") as fh:
            try:
                for i, item in enumerate(bson.decode_file_iter(fh, codec_options=RAW)):
                    if i < skip:
                        continue
                    batch.append((item["c"], item["d"]))
                    if len(batch) == size:
                        yield batch
                        batch = []
            except (bson.errors.InvalidBSON, KeyError) as exc:
                if batch:
                    yield batch
                raise PartialFile(f"{path.name}: {exc}") from exc
        if batch:
            yield batch

    def quarantine(self, path: Path) -> Path:
        """Set a file that does not parse fully aside, for a person to look at; never deleted here."""
        target = self.dir / f"quarantine-{path.name}"
        path.rename(target)
        log.error("%s does not parse past its last good record: kept as %s", path.name, target.name)
        return target

    def keep_rest(self, path: Path, written: int) -> None:
        """After a replay failed part-way: the entries not yet written become the file to replay next time."""
        rest = self.dir / file_name("replay", self.token, uuid.uuid4().hex[:8])
        partial = False
        with rest.open("wb") as fh:
            try:
                for batch in Outbox.batches(path, 10_000, skip=written):
                    fh.write(b"".join(entry(coll, doc) for coll, doc in batch))
            except PartialFile:
                partial = True
            fh.flush()
            os.fsync(fh.fileno())
        stat = path.stat()
        os.utime(rest, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # keeps its place in the replay order
        if partial:
            self.quarantine(path)
        else:
            path.unlink(missing_ok=True)
