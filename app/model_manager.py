"""Keeps the champion loaded: from MLflow when it can, from the local cache when MLflow is down.

A background thread polls the `champion` alias; a new version is downloaded, loaded and smoke-tested
on its input example off the request path, then swapped in with one reference assignment, so no
request ever sees a half-loaded model.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.database import Database

from model import provenance
from model.champion import Model, open_model
from model.registry import CHAMPION, Registry, RegistryConfig

log = logging.getLogger(__name__)
POINTER = "champion.json"


class ModelManager:
    def __init__(
        self, config: RegistryConfig, cache_dir: Path, poll_seconds: float, db: Callable[[], Database]
    ) -> None:
        self.config = config
        self.db = db  # where the gate recorded the digests of what may be loaded (model/provenance.py)
        self.refused: dict[str, str] = {}  # version -> why its files were not loaded
        self.cache_dir = cache_dir / config.model_name
        self.poll_seconds = poll_seconds
        self.current: Model | None = None
        self.mlflow_ok: bool | None = None
        self.last_error: str | None = None
        self.last_check: str | None = None
        self.last_check_at: float | None = None  # unix time, for /metrics
        self._registry: Registry | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.config)
        return self._registry

    def start(self) -> None:
        """Load a champion before serving (cache first, else the registry), then follow the registry.

        Loading before the worker accepts requests keeps a freshly started worker from answering 503
        while its neighbours serve; when neither the cache nor the registry has a champion, the worker
        starts anyway and the poller picks one up when it appears.
        """
        self._load_cached()
        if self.current is None:
            self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.poll_seconds)

    def refresh(self) -> dict[str, Any]:
        """Look up the champion alias and load it if it is not the version being served."""
        with self._lock:
            try:
                return self._refresh()
            finally:
                self.last_check_at = time.time()
                self.last_check = datetime.fromtimestamp(self.last_check_at, UTC).isoformat()

    def _refresh(self) -> dict[str, Any]:
        try:
            champion = self.registry.by_alias(CHAMPION)
            self.mlflow_ok = True
        except Exception as exc:  # MLflow down or misconfigured: keep serving what we have
            self._fail(f"MLflow unavailable: {type(exc).__name__}: {str(exc)[:200]}")
            self.mlflow_ok = False
            if self.current is None:
                self._load_cached()  # another worker, or an earlier run, may have cached the champion
            return {"changed": False, "error": self.last_error}
        if champion is None:
            self.last_error = f"the registry has no '{CHAMPION}' alias on model {self.config.model_name}"
            return {"changed": False, "error": self.last_error}
        if self.current is not None and self.current.version == champion.version and self._still_current():
            self.last_error = None
            return {"changed": False, "version": champion.version}
        try:
            loaded = self._load_from_registry(champion.version)
        except Exception as exc:  # a bad version must not take down the one being served
            self._fail(f"could not load version {champion.version}: {type(exc).__name__}: {str(exc)[:300]}")
            return {"changed": False, "error": self.last_error}
        previous = self.current.version if self.current else None
        self.current = loaded  # the swap: one reference assignment
        self.last_error = None
        log.info("serving %s version %s (was %s)", loaded.name, loaded.version, previous)
        settle_heap()
        return {"changed": True, "version": loaded.version, "previous": previous}

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning(message)
        self.last_error = message

    def _load_from_registry(self, version: str) -> Model:
        target = self.cache_dir / f"v{version}"
        name = self.config.model_name
        expected = provenance.recorded(self.db(), name, version)
        cached = (target / "MLmodel").exists()
        if cached and (expected is None or provenance.digest(target) != expected):
            # another registry's version of the same number, or a damaged copy: fetch it again
            shutil.rmtree(target, ignore_errors=True)
            cached = False
        if not cached:
            self._download(version, target)
        try:
            files = provenance.verify(target, expected, f"{name} version {version}")
        except provenance.ProvenanceError as exc:
            if self.refused.get(version) != str(exc):
                log.error("not loading %s", exc)
                provenance.refuse(self.db(), name, version, "app", str(exc))
            self.refused[version] = str(exc)
            raise
        self.refused.pop(version, None)
        mv = self.registry.version(version)
        metrics = self.registry.run_metrics(mv.run_id)
        info = {
            "name": self.config.model_name,
            "version": version,
            "aliases": self.registry.aliases_of(version),
            "run_id": mv.run_id,
            "metrics": metrics,
            "dataset_hash": mv.tags.get("dataset_hash"),
            "tags": mv.tags,
            "path": str(target),
            "digest": files,
            "registry": self.config.registry,  # a version number means nothing without its registry
        }
        loaded = open_model(target, self.config.model_name, version, info)
        _write_pointer(self.cache_dir / POINTER, info)
        return loaded

    def _still_current(self) -> bool:
        """The served files are still what the gate last promoted under this version number (a cached
        copy served while MLflow was down, or a registry reset that reused the number, may not be)."""
        assert self.current is not None
        try:
            expected = provenance.recorded(self.db(), self.config.model_name, self.current.version)
        except Exception as exc:  # MongoDB down: keep serving, check again at the next poll
            log.debug("could not check the served digest: %s", exc)
            return True
        return expected is not None and self.current.info.get("digest") == expected

    def _download(self, version: str, target: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=self.cache_dir))
        try:
            downloaded = self.registry.download_version(version, tmp)
            try:
                os.rename(downloaded, target)
            except OSError:
                if not (target / "MLmodel").exists():  # not a concurrent download by another worker
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _load_cached(self) -> None:
        pointer = self.cache_dir / POINTER
        if not pointer.exists():
            return
        try:
            info = json.loads(pointer.read_text())
            if info.get("registry") != self.config.registry:
                log.info("the cached champion came from another registry; waiting for this one's")
                return
            # the pointer holds the digest verified at download: the cached files must still match it
            provenance.verify(Path(info["path"]), info.get("digest"), f"the cached version {info['version']}")
            self.current = open_model(
                Path(info["path"]), info["name"], str(info["version"]), {**info, "from_cache": True}
            )
            log.info("serving cached %s version %s until the registry answers", info["name"], info["version"])
            settle_heap()
        except Exception as exc:  # a corrupt cache is not fatal: the registry may still answer
            self._fail(f"the cached champion could not be loaded: {type(exc).__name__}: {exc}")


def settle_heap() -> None:
    """Collect once, then put every object now alive out of the cyclic collector's reach (gc.freeze).

    The imports and the model are some 240,000 tracked objects. A full collection walks them all:
    170 ms here, during which the worker answers nothing; under a stream of 1,000-row requests that
    was the p99 (bench/). Frozen, they are not walked again, only what is allocated after. Redone at
    each model swap so that the old model's reference cycles are freed, at the cost of one such pause.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _write_pointer(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, default=str))
    os.replace(tmp, path)
