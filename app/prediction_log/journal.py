"""The write-ahead journal: segments appended with one write on the request path, deleted once handled."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from app.prediction_log.files import LogUnavailable, file_name, truncate, write_all

log = logging.getLogger(__name__)


class Journal:
    """Write-ahead segments: appended (one write, no fsync) on the request path, deleted once handled."""

    def __init__(self, directory: Path, token: str, segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.dir = directory
        self.token = token
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segment = -1
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._pending: dict[int, int] = {}

    def _path(self, segment: int) -> Path:
        return self.dir / file_name("journal", self.token, f"{segment:06d}")

    def append(self, entries: list[bytes], count: int | None = None) -> int:
        """Append encoded entries (`count` records in all, if they are pre-joined); returns their segment."""
        data = b"".join(entries)
        count = len(entries) if count is None else count
        with self._lock:
            try:
                self._write(data)
            except OSError as exc:
                if self._fd is not None and not truncate(self._fd, self._size):
                    self._abandon()  # cannot cut the partial record off: the next append starts a new segment
                if self._fd is None or self._pending.get(self._segment, 0) > 0:
                    raise LogUnavailable(
                        f"the prediction log cannot write to {self.dir}: {exc.strerror or exc}"
                    ) from exc
                # a full disk, and everything in this segment is handled: start afresh, freeing its space
                try:
                    self._rotate()
                    self._write(data)
                except OSError as again:
                    if self._fd is not None and not truncate(self._fd, self._size):
                        self._abandon()
                    raise LogUnavailable(
                        f"the prediction log cannot write to {self.dir}: {again.strerror or again}"
                    ) from again
            self._size += len(data)
            self._dirty = True
            self._pending[self._segment] = self._pending.get(self._segment, 0) + count
            return self._segment

    def _write(self, data: bytes) -> None:
        if self._fd is None or self._size >= self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        write_all(self._fd, data)

    def _rotate(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None  # never kept once closed: the number may go to another file
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if self._pending.get(self._segment, 0) == 0:
                self._path(self._segment).unlink(missing_ok=True)
                self._pending.pop(self._segment, None)
        self._segment += 1
        self._size = 0
        self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _abandon(self) -> None:
        """Stop appending to the current segment (its records stay pending until they are handled)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        self._size = self.segment_bytes

    def sync(self) -> None:
        """fsync outside the lock, on a duplicate descriptor: a slow disk must not stall requests."""
        with self._lock:
            if self._fd is None or not self._dirty:
                return
            fd = os.dup(self._fd)
            self._dirty = False
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def done(self, counts: dict[int, int]) -> None:
        """These many entries of each segment are now in MongoDB or the outbox."""
        with self._lock:
            for segment, n in counts.items():
                left = self._pending.get(segment, 0) - n
                self._pending[segment] = left
                if left <= 0 and segment != self._segment:
                    self._path(segment).unlink(missing_ok=True)
                    self._pending.pop(segment, None)

    def close(self) -> None:
        """Clean shutdown: everything was handled, so the last segment goes too (unless it still holds work)."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
                if self._pending.get(self._segment, 0) <= 0:
                    self._path(self._segment).unlink(missing_ok=True)
