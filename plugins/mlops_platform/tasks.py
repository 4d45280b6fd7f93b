"""Task bodies shared by the DAGs: settings in, a lifecycle step, a small dict out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from config.settings import Settings
from model import lifecycle
from model.errors import DataValidationError
from model.params import Params, load_params
from plugins.mlops_platform.hooks import PlatformMongoHook, PlatformRegistryHook

log = logging.getLogger(__name__)


# What a DAG run's conf may override: how to train, never where data comes from or what the gate
# accepts. Whoever can trigger a run is not thereby allowed to read files, fetch URLs or promote.
CONF_ALLOWED: dict[str, frozenset[str]] = {
    "train": frozenset({"estimator", "hyperparameters", "augment_shifts"}),
    "data": frozenset({"seed", "holdout_fraction", "include_feedback"}),
}


def params_for(settings: Settings, conf: dict[str, Any] | None) -> Params:
    """params.yaml with the per-run overrides of conf["params"] that CONF_ALLOWED lets through."""
    from airflow.sdk.exceptions import AirflowFailException

    overrides = (conf or {}).get("params") or {}
    if not isinstance(overrides, dict):
        raise AirflowFailException('conf "params" must be an object of sections')
    refused = [
        f"{section}.{key}" if isinstance(values, dict) else section
        for section, values in overrides.items()
        for key in (values if isinstance(values, dict) else [None])
        if section not in CONF_ALLOWED or key not in CONF_ALLOWED[section]
    ]
    if refused:
        allowed = ", ".join(f"{s}.{k}" for s, keys in CONF_ALLOWED.items() for k in sorted(keys))
        raise AirflowFailException(
            f"run conf may not set {', '.join(sorted(refused))}: sources, paths and promotion thresholds come "
            f"from config/params.yaml only; a run may set {allowed}"
        )
    return load_params(settings.params_path, **overrides)


def snapshot_dir(settings: Settings, path: str) -> Path:
    """A snapshot path from a run's conf or Asset event, refused unless it is under DATA_DIR/snapshots."""
    from airflow.sdk.exceptions import AirflowFailException

    root = (settings.data_dir / "snapshots").resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise AirflowFailException(f"a snapshot must be a directory under {root}; the run named another path")
    return resolved


def ingest(conf: dict[str, Any] | None) -> dict[str, Any]:
    """Bad data fails the task at once: retrying cannot fix it, and the message says what to fix."""
    from airflow.sdk.exceptions import AirflowFailException

    settings = Settings()
    params = params_for(settings, conf)
    with PlatformMongoHook(settings) as mongo:
        try:
            snapshot = lifecycle.ingest(params, settings.data_dir, mongo.get_conn(), settings.sources)
        except DataValidationError as exc:
            raise AirflowFailException(f"the data was rejected: {exc}") from exc
    return {**snapshot, "params": (conf or {}).get("params")}


def train(snapshot: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    params = params_for(settings, snapshot)
    registry = PlatformRegistryHook(settings).get_conn()
    with PlatformMongoHook(settings) as mongo:
        result = lifecycle.train_and_register(
            params, snapshot_dir(settings, snapshot["path"]), registry, mongo.get_conn()
        )
    return {**result, "path": snapshot["path"], "params": snapshot.get("params")}


def validate(trained: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    params = params_for(settings, trained)
    registry = PlatformRegistryHook(settings).get_conn()
    with PlatformMongoHook(settings) as mongo:
        return lifecycle.validate_and_promote(
            params,
            snapshot_dir(settings, trained["path"]),
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
