"""The whole lifecycle against an MLflow 2.7.1 server with basic auth, as DagsHub runs it.

The DAGs run with dag.test(); the app runs under gunicorn; rollback runs as the CLI a user types.
Every one of them is configured through the environment only, as `.env` would configure it.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from config.settings import ROOT, Settings, registry_config
from model import lifecycle
from model.errors import RegistryError
from model.kinds.digits import load_digits_dataset
from model.params import load_params
from model.registry import CHAMPION, MONITORING_EXPERIMENT, PREVIOUS, Registry, RegistryConfig, connect
from ops import services
from tests.app.conftest import png_bytes
from tests.conftest import MLFLOW2_PASSWORD, MLFLOW2_USER, start_ready_app

MODEL = "digits-mlflow2"
DB = "mlflow2_test"
DIGITS = load_digits_dataset()
# a quick model: this file tests the registry, not the estimator
QUICK = {"train": {"estimator": "mlp", "hyperparameters": {"hidden_layer_sizes": [64], "max_iter": 100}}}


def config(server: services.Service, password: str = MLFLOW2_PASSWORD) -> RegistryConfig:
    return RegistryConfig(server.url, MODEL, MODEL, username=MLFLOW2_USER, password=password, http_retries=0)


@pytest.fixture
def env2(mlflow2, servers, monkeypatch, tmp_path) -> dict[str, str]:
    """What a user's .env says for a remote MLflow 2.x behind basic auth."""
    env = {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": DB,
        "MLFLOW_TRACKING_URI": mlflow2.url,
        "MLFLOW_TRACKING_USERNAME": MLFLOW2_USER,
        "MLFLOW_TRACKING_PASSWORD": MLFLOW2_PASSWORD,
        "MODEL_NAME": MODEL,
        "EXPERIMENT_NAME": MODEL,
        "DATA_DIR": str(tmp_path / "data"),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_probe_finds_a_2x_server_without_logged_models(mlflow2):
    capabilities = connect(config(mlflow2)).capabilities
    assert capabilities.logged_models is False
    assert capabilities.server_version == "2.7.1"


def test_probe_finds_logged_models_on_mlflow_3(servers):
    capabilities = connect(RegistryConfig(servers.mlflow.url, "m3", "m3", http_retries=0)).capabilities
    assert capabilities.logged_models is True
    assert capabilities.server_version and capabilities.server_version.startswith("3.")


def test_wrong_password_names_the_variables_to_fix(mlflow2):
    with pytest.raises(
        RegistryError, match=r"refused our credentials.*MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
    ):
        connect(config(mlflow2, password="wrong"))


def test_wrong_dagshub_token_names_the_dagshub_variables(mlflow2):
    """DAGSHUB_* settings alone, with the host pointed at the 2.x server (which checks auth on any path)."""
    settings = Settings(
        _env_file=None,
        dagshub_client_host=mlflow2.url,
        dagshub_repo_owner="team",
        dagshub_repo_name="digits",
        dagshub_username="alice",
        DAGSHUB_USER_TOKEN="not-the-token",
    )
    assert registry_config(settings).tracking_uri == f"{mlflow2.url}/team/digits.mlflow"
    with pytest.raises(RegistryError, match=r"user 'alice'.*check DAGSHUB_USERNAME / DAGSHUB_USER_TOKEN"):
        connect(registry_config(settings, http_retries=0))


def test_lifecycle_on_mlflow_2_with_basic_auth(dagbag, env2, mlflow2, mongo_client, tmp_path, monkeypatch):
    db = mongo_client[DB]
    db.model_events.delete_many({})

    # ingest -> train -> validate -> promote, through the DAG a user triggers
    started = time.monotonic()
    pipeline = dagbag.get_dag("ml_pipeline").test(run_conf={"params": QUICK})
    print(f"ml_pipeline {time.monotonic() - started:.1f}s")
    assert pipeline.state == "success", {ti.task_id: ti.state for ti in pipeline.get_task_instances()}
    registry = Registry(config(mlflow2))
    champion = registry.by_alias(CHAMPION)
    assert champion is not None, "the alias exists on the 2.x server"
    assert champion.source == f"runs:/{champion.run_id}/model", "logged as run artifacts, not as a logged model"
    assert db.model_events.find_one({"version": champion.version, "outcome": "promoted"}) is not None
    mlmodel = registry.download_version(champion.version, tmp_path / "dl") / "MLmodel"
    assert "predict_fn: predict_proba" in mlmodel.read_text(), "pyfunc serves what the app serves"

    # the app, configured by the environment alone, loads that champion and logs its predictions
    root = tmp_path / "app"
    app_env = {
        **env2,
        "OUTBOX_DIR": str(root / "outbox"),
        "LOG_FLUSH_SECONDS": "0.05",
    }
    app, proc = start_ready_app(root, app_env)
    try:
        health = requests.get(f"{app.url}/health", timeout=5)
        assert str(health.json()["model"]["version"]) == champion.version
        serving = requests.get(f"{app.url}/model-info", timeout=5).json()["serving"]
        assert serving["engine"] == "onnxruntime", "the compiled graph travels in the 2.x run's model directory"
        answer = requests.post(f"{app.url}/predict", json={"instances": DIGITS.X[:5].tolist()}, timeout=10)
        assert answer.status_code == 200, answer.text
        pid = answer.json()["predictions"][0]["id"]
        record = requests.get(f"{app.url}/predictions/{pid}", timeout=10)
        assert record.status_code == 200 and record.json()["model_version"] == champion.version

        # batch scoring loads the same champion (Airflow's REST API is not running: the test starts the run)
        upload = io.BytesIO()
        with zipfile.ZipFile(upload, "w") as archive:
            for i in range(3):
                archive.writestr(f"{i}.png", png_bytes(DIGITS.X[i]))
        batch = requests.post(f"{app.url}/batches", files={"file": ("d.zip", upload.getvalue())}, timeout=10)
        assert batch.status_code == 202, batch.text
        batch_id = batch.json()["id"]
        assert dagbag.get_dag("score_batch").test(run_conf={"batch_id": batch_id}).state == "success"
        scored = requests.get(f"{app.url}/batches/{batch_id}", timeout=10).json()
        assert scored["status"] == "succeeded" and scored["model_version"] == champion.version, scored

        # monitoring logs its run on the same server
        monitor = dagbag.get_dag("monitor_platform")
        env_app = pytest.MonkeyPatch()
        env_app.setenv("APP_URL", app.url)
        try:
            started = time.monotonic()
            monitor.test()
            print(f"monitor {time.monotonic() - started:.1f}s")
        finally:
            env_app.undo()
    finally:
        services.stop_group(proc.pid)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", MLFLOW2_USER)  # our own reads below, as MlflowClient takes them
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", MLFLOW2_PASSWORD)
    client = MlflowClient(mlflow2.url)
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.model_name = '{MODEL}'")
    assert runs and "report.json" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    report = db.monitoring_reports.find_one(sort=[("created_at", -1)])
    assert report is not None and report["run_id"] == runs[0].info.run_id
    assert report["checks"]["mlflow"]["status"] == "ok" and report["checks"]["champion"]["status"] == "ok"

    # a second champion, then rollback with the CLI
    params = load_params(ROOT / "config" / "params.yaml", data={"source": "digits"})
    params = params.model_copy(update={"train": params.train.model_copy(update=QUICK["train"])})
    started = time.monotonic()
    snapshot = Path(next((Path(env2["DATA_DIR"]) / "snapshots").glob("*/manifest.json")).parent)
    second = lifecycle.train_and_register(params, snapshot, registry, db)
    decision = lifecycle.validate_and_promote(params, snapshot, second["version"], registry, db, tmp_path / "val")
    assert decision["outcome"] == "promoted", decision
    assert registry.by_alias(PREVIOUS).version == champion.version
    print(f"second {time.monotonic() - started:.1f}s")
    rollback = subprocess.run(
        [str(services.BIN / "python"), "-m", "ops.rollback"],
        env=services.base_env({**env2, "MLOPS_ENV_FILE": str(tmp_path / "no.env")}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    assert json.loads(rollback.stdout.strip().splitlines()[-1])["champion"] == champion.version
    assert registry.by_alias(CHAMPION).version == champion.version
    assert registry.by_alias(PREVIOUS).version == second["version"]


def test_registry_on_another_server_than_tracking(servers, mlflow2, mongo_client, champion, tmp_path, monkeypatch):
    """MLFLOW_REGISTRY_URI: runs and artifacts on one server (MLflow 3), versions and aliases on another (2.7.1)."""
    settings = Settings(
        _env_file=None,
        mlflow_tracking_uri=servers.mlflow.url,
        mlflow_registry_uri=mlflow2.url,
        mlflow_tracking_username=MLFLOW2_USER,
        mlflow_tracking_password=MLFLOW2_PASSWORD,
        model_name="digits-split",
        experiment_name="digits-split",
    )
    registry = connect(registry_config(settings, http_retries=0))
    assert registry.capabilities.logged_models is False, "the 2.x registry cannot register a logged model"
    params = champion["params"]
    params = params.model_copy(update={"train": params.train.model_copy(update=QUICK["train"])})
    snapshot = champion["snapshot_path"]
    trained = lifecycle.train_and_register(params, snapshot, registry, mongo_client[DB])
    decision = lifecycle.validate_and_promote(
        params, snapshot, trained["version"], registry, mongo_client[DB], tmp_path
    )
    assert decision["outcome"] == "promoted", decision

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", MLFLOW2_USER)  # our own reads below, as MlflowClient takes them
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", MLFLOW2_PASSWORD)
    on_registry = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=mlflow2.url)
    assert on_registry.get_model_version_by_alias("digits-split", CHAMPION).version == trained["version"]
    assert on_registry.get_run(trained["run_id"]).info.experiment_id, "the run is on the tracking server"
    assert MlflowClient(servers.mlflow.url).search_registered_models(filter_string="name = 'digits-split'") == []
    assert (registry.download_version(trained["version"], tmp_path / "dl") / "MLmodel").exists()
