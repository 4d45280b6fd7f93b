"""Task bodies shared by the DAGs: settings in, a lifecycle step, a small dict out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from model import lifecycle
from model.errors import DataValidationError
from model.params import Params, load_params
from plugins.mlops_platform.hooks import PlatformMongoHook, PlatformRegistryHook
from plugins.mlops_platform.settings import Settings

log = logging.getLogger(__name__)


def params_for(settings: Settings, conf: dict[str, Any] | None) -> Params:
    """params.yaml with optional per-run section overrides from the DAG run's conf["params"]."""
    return load_params(settings.params_path, **((conf or {}).get("params") or {}))


def ingest(conf: dict[str, Any] | None) -> dict[str, Any]:
    """Bad data fails the task at once: retrying cannot fix it, and the message says what to fix."""
    from airflow.sdk.exceptions import AirflowFailException

    settings = Settings()
    params = params_for(settings, conf)
    with PlatformMongoHook(settings) as mongo:
        try:
            snapshot = lifecycle.ingest(params, settings.data_dir, mongo.get_conn())
        except DataValidationError as exc:
            raise AirflowFailException(f"the data was rejected: {exc}") from exc
    return {**snapshot, "params": (conf or {}).get("params")}


def train(snapshot: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    params = params_for(settings, snapshot)
    registry = PlatformRegistryHook(settings).get_conn()
    with PlatformMongoHook(settings) as mongo:
        result = lifecycle.train_and_register(params, Path(snapshot["path"]), registry, mongo.get_conn())
    return {**result, "path": snapshot["path"], "params": snapshot.get("params")}


def validate(trained: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    params = params_for(settings, trained)
    registry = PlatformRegistryHook(settings).get_conn()
    with PlatformMongoHook(settings) as mongo:
        return lifecycle.validate_and_promote(
            params,
            Path(trained["path"]),
            str(trained["version"]),
            registry,
            mongo.get_conn(),
            settings.model_cache_dir / "validation",
        )


def latest_snapshot(settings: Settings) -> dict[str, Any]:
    """The newest snapshot on disk, for runs started by hand rather than by an Asset event."""
    root = settings.data_dir / "snapshots"
    manifests = sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime) if root.exists() else []
    if not manifests:
        raise FileNotFoundError(f"no snapshot under {root}: run the ingest_data DAG first")
    path = manifests[-1].parent
    return {"hash": path.name, "path": str(path)}


def upstream(context: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any] | None:
    """The payload this run was started with: conf from a manual trigger, else the Asset event's extra."""
    conf = dict(context["dag_run"].conf or {})
    if all(key in conf for key in required):
        return conf
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in reversed(list(events)):
            extra = dict(event.extra or {})
            if all(key in extra for key in required):
                return {**extra, **conf}
    return None
