"""Where training data may come from: a data directory and configured hosts, read with limits.

A source names a file or a URL, and whoever can set it can make the ingest task read it. So a local
path must resolve (symlinks included) inside the data-source directory, and a URL must be http(s) on
a configured host; a download has a timeout and a size cap, and no redirect leaves the host. Errors
say which rule was broken and the setting that changes it; they never quote what was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from model.errors import DataValidationError

_CHUNK = 1 << 16
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class SourcePolicy:
    directory: Path  # local files must be inside it (DATA_SOURCE_DIR)
    hosts: tuple[str, ...] = ()  # http(s) hosts data may be fetched from (DATA_SOURCE_HOSTS)
    max_bytes: int = 1 << 30  # DATA_SOURCE_MAX_BYTES
    timeout: float = 30.0  # seconds to connect, and between two reads (DATA_SOURCE_TIMEOUT_SECONDS)

    def local_path(self, source: str | Path) -> Path:
        """The resolved path of a local source, refused unless it is inside the directory."""
        root = self.directory.resolve()
        path = Path(source).expanduser()
        resolved = (path if path.is_absolute() else root / path).resolve()
        if not resolved.is_relative_to(root):
            raise DataValidationError(
                f"{source} is outside the data-source directory {root}: put the data there, "
                "or set DATA_SOURCE_DIR to the directory that holds it"
            )
        if not resolved.exists():
            raise DataValidationError(f"data file {source} does not exist (relative paths start at {root})")
        return resolved

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DataValidationError(f"a data URL must be http or https, not {parts.scheme or 'empty'}")
        host = (parts.hostname or "").lower()
        if host not in self.hosts:
            raise DataValidationError(
                f"host '{host}' is not in DATA_SOURCE_HOSTS ({', '.join(self.hosts) or 'empty'}): "
                "add it there to fetch training data from it"
            )

    def fetch(self, url: str, shown: str) -> bytes:
        """The body of an allowed URL, at most max_bytes, following redirects on allowed hosts only.

        `shown` is how the URL may appear in errors (with its credentials redacted).
        """
        import requests

        for _ in range(_MAX_REDIRECTS + 1):
            self.check_url(url)
            try:
                response = requests.get(url, stream=True, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise DataValidationError(f"could not fetch {shown}: {type(exc).__name__}") from exc
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status_code != 200:
                    raise DataValidationError(f"fetching {shown} answered HTTP {response.status_code}")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise DataValidationError(self._too_large(shown))
                body = bytearray()
                try:
                    for chunk in response.iter_content(_CHUNK):
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise DataValidationError(self._too_large(shown))
                except requests.RequestException as exc:
                    raise DataValidationError(f"fetching {shown} failed midway: {type(exc).__name__}") from exc
                return bytes(body)
        raise DataValidationError(f"fetching {shown} was redirected more than {_MAX_REDIRECTS} times")

    def _too_large(self, shown: str) -> str:
        return f"{shown} is larger than DATA_SOURCE_MAX_BYTES ({self.max_bytes:,} bytes)"
