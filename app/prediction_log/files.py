"""The prediction log's files: entry encoding, names (kind, host, pid, token), whole writes, process liveness."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

log = logging.getLogger(__name__)


class LogUnavailable(Exception):
    """A record could not be made durable (disk full, outbox at its cap): the request must not be acknowledged."""


class PartialFile(Exception):
    """An outbox or journal file ends in (or holds) a record that does not parse: it is quarantined."""


def entry(collection: str, doc: Any) -> bytes:
    """One outbox/journal entry: the collection name and the document."""
    return bson.encode({"c": collection, "d": doc})


def wrap(collection: str, raw: bytes) -> bytes:
    """entry(collection, RawBSONDocument(raw)), assembled from bytes: the request path runs it per record."""
    return entry_prefix(collection, len(raw)) + raw + b"\x00"


def entry_prefix(collection: str, doc_length: int) -> bytes:
    """The bytes of an entry before its document (the document, then one 0 byte, follow): the one place
    the envelope {"c": collection, "d": document} is laid out in bytes."""
    name = collection.encode() + b"\x00"
    elements_length = 1 + 2 + 4 + len(name) + 1 + 2 + doc_length
    return INT32.pack(elements_length + 5) + b"\x02c\x00" + INT32.pack(len(name)) + name + b"\x03d\x00"


INT32 = struct.Struct("<i")
TZ_AWARE: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)


def _host_id() -> str:
    """This machine or container, as file names carry it: 'h' + hostname hash, 'b' + boot id hash."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    name = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    return f"h{name}b{hashlib.sha256(boot.encode()).hexdigest()[:6]}"


HOST = _host_id()


def file_name(kind: str, token: str, tail: str = "") -> str:
    """A log file's name: its kind (outbox, journal, replay), this host and process, the writer's token."""
    return f"{kind}-{HOST}-{os.getpid()}-{token}{'-' + tail if tail else ''}.bson"


def owner(name: str) -> tuple[str, str, int, str]:
    """(kind, host, pid, token) of a log file; names from before hosts were recorded count as ours."""
    parts = name.removesuffix(".bson").split("-")
    if len(parts) > 3 and parts[1].startswith("h") and not parts[1].isdigit():
        return parts[0], parts[1], int(parts[2]), parts[3]
    return parts[0], HOST, int(parts[1]), parts[2]


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a write may be short (a signal, a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(28, "no space left on device (short write)")
        view = view[written:]


def truncate(fd: int, size: int) -> bool:
    """Cut a file back to `size` bytes; False when even that fails."""
    try:
        os.ftruncate(fd, size)
        return True
    except OSError:
        log.exception("could not truncate a log file back to %d bytes", size)
        return False


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
