"""Task bodies of the monitor_platform DAG. Each check returns {status, message, ...}; a breach raises."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from config.settings import Settings
from model import kinds, monitoring, provenance
from model.ids import id_floor
from model.params import load_params
from model.registry import CHAMPION, EXAMPLE_PREDICTIONS_ARTIFACT, PROFILE_ARTIFACT
from model.store import MONITORING_REPORTS, PREDICTIONS, window_statistics
from plugins.mlops_platform.hooks import PlatformMongoHook, PlatformRegistryHook

log = logging.getLogger(__name__)
WINDOW = timedelta(hours=24)
MAX_DRIFT_ROWS = 20_000
CHECKS = ("mlflow", "champion", "app", "statistics", "drift")
_STATUS_VALUE = {monitoring.OK: 0, monitoring.SKIPPED: 0, monitoring.WARN: 1, monitoring.ALERT: 2, "failed": 3}


class CheckFailed(Exception):
    """A check ran and found a breach (not a transient error): the task fails without retrying."""


def check_mlflow(settings: Settings) -> dict[str, Any]:
    registry = PlatformRegistryHook(settings).get_conn()  # probes reachability, auth, registry, aliases
    return {"status": monitoring.OK, "message": f"MLflow at {registry.config.tracking_uri} answers with a registry"}


def check_champion(settings: Settings) -> dict[str, Any]:
    """The champion loads, reproduces its logged predictions, and is the version the app serves."""
    from mlflow.exceptions import MlflowException

    registry = PlatformRegistryHook(settings).get_conn()
    champion = registry.by_alias(CHAMPION)
    if champion is None:
        raise CheckFailed(f"no version of {settings.model_name} carries the alias '{CHAMPION}'")
    dst = settings.model_cache_dir / "monitor" / f"v{champion.version}"
    with PlatformMongoHook(settings) as mongo:
        try:  # opening it smoke-tests it on its input example (model/champion.py)
            model = provenance.load_promoted(registry, mongo.get_conn(), champion.version, dst, "monitor")
        except provenance.ProvenanceError as exc:
            raise CheckFailed(f"champion v{champion.version} is not loaded: {exc}") from exc
        except ValueError as exc:
            raise CheckFailed(f"champion v{champion.version} is not usable: {exc}") from exc
    got = model.pipeline.predict(model.example).tolist()
    try:
        expected = registry.run_json(champion.run_id, EXAMPLE_PREDICTIONS_ARTIFACT)["labels"]
    except MlflowException:
        expected = None  # versions trained before this artifact existed: the probability check stands
        log.warning("v%s has no %s to compare with", champion.version, EXAMPLE_PREDICTIONS_ARTIFACT)
    if expected is not None and got != expected:
        raise CheckFailed(f"champion v{champion.version} predicts {got} on its input example, logged {expected}")
    app_version = None
    try:
        response = requests.get(f"{settings.app_url}/model-info", timeout=5)
        if response.status_code == 200:
            app_version = str(response.json()["version"])
    except requests.RequestException as exc:
        log.warning("app unreachable for the version comparison (the app check reports it): %s", exc)
    if app_version is not None and app_version != champion.version:
        raise CheckFailed(
            f"champion mismatch: the registry's champion is v{champion.version} but the app serves v{app_version} "
            "(the app has not picked up the promotion)"
        )
    return {
        "status": monitoring.OK,
        "message": f"champion v{champion.version} loads and reproduces its input example; app serves v{app_version}",
        "version": champion.version,
        "run_id": champion.run_id,
        "app_version": app_version,
    }


def check_app(settings: Settings, attempts: int = 3) -> dict[str, Any]:
    last = ""
    for attempt in range(attempts):
        try:
            health = requests.get(f"{settings.app_url}/health", timeout=5)
            stats = requests.get(f"{settings.app_url}/statistics", params={"window": "24h"}, timeout=10)
            if health.status_code == 200 and stats.status_code == 200:
                return {
                    "status": monitoring.OK,
                    "message": f"app at {settings.app_url} is ready and answers /statistics",
                    "health": health.json(),
                }
            last = f"/health {health.status_code} ({health.json().get('reason', '')}), /statistics {stats.status_code}"
        except requests.RequestException as exc:
            last = f"the app at {settings.app_url} is unreachable: {type(exc).__name__}"
        if attempt < attempts - 1:
            time.sleep(2)
    raise CheckFailed(last)


def collect_statistics(settings: Settings) -> dict[str, Any]:
    params = load_params(settings.params_path).monitoring
    with PlatformMongoHook(settings) as mongo:
        stats = window_statistics(mongo.get_conn(), datetime.now(UTC) - WINDOW, params.low_confidence)
    check = monitoring.statistics_check(stats, params)
    return {**check, "statistics": stats}


def check_drift(settings: Settings) -> dict[str, Any]:
    params = load_params(settings.params_path).monitoring
    registry = PlatformRegistryHook(settings).get_conn()
    champion = registry.by_alias(CHAMPION)
    if champion is None:
        raise CheckFailed("no champion, so no reference profile to compare with")
    profile = registry.run_json(champion.run_id, PROFILE_ARTIFACT)
    since = datetime.now(UTC) - WINDOW
    with PlatformMongoHook(settings) as mongo:
        cursor = (
            mongo.get_conn()[PREDICTIONS]
            .find(
                {"_id": {"$gte": id_floor(since)}, "ts": {"$gte": since}, "kind": "prediction"},
                {"features": 1, "label": 1, "confidence": 1, "value": 1, "_id": 0},
            )
            .sort("_id", -1)  # ids are time-ordered: the newest rows through the _id index
            .limit(MAX_DRIFT_ROWS)
        )
        docs = list(cursor)
    features = kinds.named(champion.tags.get("task")).drift(profile, docs)
    if "target" in profile:  # a regressor: drift of the predicted values against the training target
        result = monitoring.drift_check(profile, features, [d.get("value") for d in docs], [], params)
    else:
        labelled = [d for d in docs if "label" in d]
        labels, confidences = [d["label"] for d in labelled], [d.get("confidence", 0.0) for d in labelled]
        result = monitoring.drift_check(profile, features, labels, confidences, params)
    return {**result, "champion_version": champion.version}


def report(settings: Settings, results: dict[str, dict[str, Any] | None], key: str, run_id: str) -> dict[str, Any]:
    """Log every check to MLflow (one run per key) and store the report in MongoDB."""
    checks: dict[str, dict[str, Any]] = {}
    for name in CHECKS:
        result = results.get(name)
        checks[name] = result or {"status": "failed", "message": f"the {name} check did not complete: see its task log"}
    statuses = {c["status"] for c in checks.values()}
    status = "alert" if statuses & {"alert", "failed"} else monitoring.overall(checks)
    breaches = [f"{name}: {c['message']}" for name, c in checks.items() if c["status"] in ("alert", "failed")]
    warnings = [f"{name}: {c['message']}" for name, c in checks.items() if c["status"] == monitoring.WARN]
    stats: dict[str, Any] = checks["statistics"].get("statistics") or {}
    drift: dict[str, Any] = {k: v for k, v in checks["drift"].items() if k not in ("status", "message")}
    created = datetime.now(UTC)
    doc: dict[str, Any] = {
        "_id": key,
        "key": key,
        "airflow_run_id": run_id,
        "created_at": created,
        "status": status,
        "breaches": breaches,
        "warnings": warnings,
        "checks": {name: {"status": c["status"], "message": c["message"]} for name, c in checks.items()},
        "statistics": stats or None,
        "drift": drift,
    }
    return _log_report(settings, doc, checks, stats, drift)


def _log_report(
    settings: Settings,
    doc: dict[str, Any],
    checks: dict[str, dict[str, Any]],
    stats: dict[str, Any],
    drift: dict[str, Any],
) -> dict[str, Any]:
    metrics = {f"check_{name}": float(_STATUS_VALUE[c["status"]]) for name, c in checks.items()}
    if stats:
        optional = {
            "latency_p95_ms": stats["latency_ms"]["p95"],
            "mean_confidence": stats["mean_confidence"],
            "feedback_accuracy": stats["feedback"]["accuracy"],
        }
        metrics["predictions_24h"] = float(stats["total"])
        metrics["error_rate"] = float(stats["error_rate"])
        metrics.update({k: float(v) for k, v in optional.items() if v is not None})
    if drift.get("psi"):
        names = drift.get("features") or [f"{j:02d}" for j in range(len(drift["psi"]))]
        metrics.update({f"psi_{_metric_name(name)}": float(v) for name, v in zip(names, drift["psi"], strict=True)})
        metrics["psi_max"] = float(drift["max_psi"])
        metrics["label_chi2_pvalue"] = float(drift["label_chi2_pvalue"])
        metrics["low_confidence_share"] = float(drift["low_confidence_share"])
    registry = PlatformRegistryHook(settings).get_conn()
    serializable = {**doc, "created_at": doc["created_at"].isoformat()}
    doc["run_id"] = registry.log_monitoring(doc["key"], metrics, serializable)
    with PlatformMongoHook(settings) as mongo:
        mongo.get_conn()[MONITORING_REPORTS].replace_one({"_id": doc["key"]}, doc, upsert=True)
    return {
        "status": doc["status"],
        "breaches": doc["breaches"],
        "warnings": doc["warnings"],
        "mlflow_run_id": doc["run_id"],
    }


def _metric_name(name: str) -> str:
    """MLflow metric keys: feature 7 -> feature_07, a column name kept to allowed characters."""
    if name.startswith("feature ") and name[8:].isdigit():
        return f"feature_{int(name[8:]):02d}"
    return re.sub(r"[^A-Za-z0-9_./ -]", "_", name)


def wants_retraining(summary: dict[str, Any] | None) -> bool:
    """Whether this run should ask for retraining: an alert, and RETRAIN_ON_ALERT=true."""
    return bool(summary and summary["status"] == monitoring.ALERT and Settings().retrain_on_alert)


def run_check(name: str, check: Callable[[Settings], dict[str, Any]]) -> dict[str, Any]:
    """Run a check inside a task: push its result (even a failure) for the report, raise on a breach."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    ti = get_current_context()["ti"]
    try:
        result = check(Settings())
    except CheckFailed as exc:
        ti.xcom_push(key="check", value={"status": monitoring.ALERT, "message": str(exc)})
        raise AirflowFailException(f"{name}: {exc}") from exc
    except Exception as exc:
        ti.xcom_push(key="check", value={"status": "failed", "message": f"{type(exc).__name__}: {exc}"})
        raise
    ti.xcom_push(key="check", value=result)
    if result["status"] == monitoring.ALERT:
        raise AirflowFailException(f"{name}: {result['message']}")
    return {"status": result["status"], "message": result["message"]}


def report_from_context() -> dict[str, Any]:
    from airflow.sdk import get_current_context

    context = get_current_context()
    ti, dag_run = context["ti"], context["dag_run"]
    results = {name: ti.xcom_pull(task_ids=name, key="check") for name in CHECKS}
    key = dag_run.logical_date.isoformat() if dag_run.logical_date else dag_run.run_id
    return report(Settings(), results, key, dag_run.run_id)


def decide(summary: dict[str, Any] | None) -> dict[str, Any]:
    """Fail naming every breached check (retraining, if wanted, was requested by the task before)."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary is None:
        raise AirflowFailException("the report task failed, so the platform's state is unknown: see its log")
    if summary["status"] != monitoring.ALERT:
        for warning in summary["warnings"]:
            log.warning("monitoring warning: %s", warning)
        return summary
    note = " (retraining requested: the retrain_request asset starts ingest_data)" if wants_retraining(summary) else ""
    raise AirflowFailException("platform checks breached: " + " | ".join(summary["breaches"]) + note)
