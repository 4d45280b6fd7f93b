"""monitor_platform with dag.test() against the real servers and the app running under gunicorn."""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient

from model.data import split
from model.kinds.digits import load_digits_dataset
from model.registry import MONITORING_EXPERIMENT
from ops import services
from tests.conftest import SERVED_DB

DATA = load_digits_dataset()
_, HOLDOUT = split(DATA, 0.25, 42)


@pytest.fixture
def monitor_env(servers, champion, served_app, monkeypatch, tmp_path):
    env = {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": SERVED_DB,
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MODEL_NAME": champion["model_name"],
        "APP_URL": served_app.url,
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def send(url: str, rows) -> None:
    for start in range(0, len(rows), 100):
        response = requests.post(f"{url}/predict", json={"instances": rows[start : start + 100].tolist()}, timeout=30)
        assert response.status_code == 200, response.text


def reports(mongo_client):
    return mongo_client[SERVED_DB].monitoring_reports


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def retrain_events(run_id: str) -> int:
    """Events on the retrain_request asset that a run of monitor_platform emitted."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).all()
        return sum(1 for e in events if e.uri == "file:///mlops/retrain_request")


def test_monitor_passes_on_training_like_traffic_then_fails_on_drift(
    dagbag, monitor_env, served_app, mongo_client, servers, monkeypatch
):
    monkeypatch.setenv("RETRAIN_ON_ALERT", "true")
    dag = dagbag.get_dag("monitor_platform")
    mongo_client[SERVED_DB].predictions.delete_many({})
    mongo_client[SERVED_DB].prediction_rollups.delete_many({})
    send(served_app.url, HOLDOUT.X[:300])

    ok_run = dag.test()
    states = task_states(ok_run)
    assert ok_run.state == "success", states
    report = reports(mongo_client).find_one({"airflow_run_id": ok_run.run_id})
    assert report["status"] in ("ok", "warn"), report["breaches"]
    assert report["checks"]["drift"]["status"] in ("ok", "warn")
    assert states["request_retraining"] == "skipped" and retrain_events(ok_run.run_id) == 0

    # statistics computed by the DAG equal the app's /statistics for the same window
    app_stats = requests.get(f"{served_app.url}/statistics", params={"window": "24h"}, timeout=10).json()
    for key in ("total", "errors", "per_label", "per_version", "mean_confidence", "latency_ms"):
        assert report["statistics"][key] == app_stats[key], key

    # one MLflow run per DAG run in the "monitoring" experiment, holding the drift metrics
    client = MlflowClient(servers.mlflow.url)
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.monitor_key = '{report['key']}'")
    assert len(runs) == 1 and "psi_feature_00" in runs[0].data.metrics

    # shifted inputs: inverted images
    send(served_app.url, 16 - HOLDOUT.X[:400])
    drift_run = dag.test()
    states = task_states(drift_run)
    assert drift_run.state == "failed"
    assert states["drift"] == "failed" and states["report"] == "success" and states["decide"] == "failed"
    report = reports(mongo_client).find_one({"airflow_run_id": drift_run.run_id})
    assert report["status"] == "alert"
    assert any(b.startswith("drift: drift: PSI over") for b in report["breaches"]), report["breaches"]
    assert report["drift"]["max_psi"] > 0.2
    # retraining through Airflow's own mechanism: an event on the asset ingest_data is scheduled on
    assert states["request_retraining"] == "success" and retrain_events(drift_run.run_id) == 1
    ingest_schedule = dagbag.get_dag("ingest_data").timetable
    assert "retrain_request" in repr(ingest_schedule.asset_condition) and ingest_schedule.can_be_scheduled


def test_monitor_fails_when_the_app_is_unreachable(dagbag, monitor_env, monkeypatch, mongo_client):
    monkeypatch.setenv("APP_URL", f"http://127.0.0.1:{services.free_port()}")
    run = dagbag.get_dag("monitor_platform").test()
    states = task_states(run)
    assert run.state == "failed"
    assert states["app"] == "failed" and states["mlflow"] == "success"
    report = reports(mongo_client).find_one({"airflow_run_id": run.run_id})
    assert any("unreachable" in b for b in report["breaches"] if b.startswith("app:")), report["breaches"]
