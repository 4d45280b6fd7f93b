"""Task bodies shared by the DAGs: settings in, a lifecycle step, a small dict out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from config.settings import Settings
from model import lifecycle
from model import snapshot as snapshots
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


def snapshot_path(settings: Settings, db: Any, payload: dict[str, Any]) -> Path:
    """This host's verified copy of the snapshot a run's conf, Asset event or XCom names by its digest.

    Snapshots live in MongoDB (model/snapshot.py), so any worker can read one; an unknown digest or
    a snapshot that does not verify fails the task, since retrying cannot help.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        digest = snapshots.check_digest(payload.get("hash"))
        return snapshots.fetch_snapshot(db, settings.data_dir, digest)
    except ValueError as exc:  # not a digest, or SnapshotCorrupt
        raise AirflowFailException(f"{exc}") from exc
    except snapshots.SnapshotNotFound as exc:
        raise AirflowFailException(
            f'{exc}, or trigger with conf {{"hash": <digest>}} naming one that ingest_data stored'
        ) from exc


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
        db = mongo.get_conn()
        result = lifecycle.train_and_register(params, snapshot_path(settings, db, snapshot), registry, db)
    return {**result, "params": snapshot.get("params")}


def validate(trained: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    params = params_for(settings, trained)
    registry = PlatformRegistryHook(settings).get_conn()
    with PlatformMongoHook(settings) as mongo:
        db = mongo.get_conn()
        return lifecycle.validate_and_promote(
            params,
            snapshot_path(settings, db, trained),
            str(trained["version"]),
            registry,
            db,
            settings.model_cache_dir / "validation",
        )


def latest_snapshot(settings: Settings) -> dict[str, Any]:
    """The snapshot stored last in MongoDB, for runs started by hand rather than by an Asset event."""
    from airflow.sdk.exceptions import AirflowFailException

    with PlatformMongoHook(settings) as mongo:
        digest = snapshots.latest_snapshot(mongo.get_conn())
    if digest is None:
        raise AirflowFailException("no snapshot in MongoDB: run the ingest_data DAG first")
    return {"hash": digest}


def upstream(context: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any] | None:
    """The payload this run was started with: conf from a manual trigger, else the Asset event's extra."""
    from airflow.sdk.exceptions import AirflowFailException

    conf = dict(context["dag_run"].conf or {})
    if "path" in conf:
        raise AirflowFailException(
            'run conf names a snapshot by "path": snapshots are stored in MongoDB and named by their digest; '
            'trigger with conf {"hash": <digest>} (the "hash" ingest_data returned), or without it for the newest'
        )
    if all(key in conf for key in required):
        return conf
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in reversed(list(events)):
            extra = dict(event.extra or {})
            if all(key in extra for key in required):
                return {**extra, **conf}
    return None
