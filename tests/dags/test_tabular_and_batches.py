"""A tabular data set end to end (ingest -> train -> promote -> served), then batches scored by score_batch.

DAGs run with dag.test() against the session's real MongoDB-wire and MLflow servers; the app runs
in-process on the same servers. Only the REST call that starts a batch run is replaced, by a callable
that records its conf so the test can run that DAG itself.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flask import Flask

from app import create_app, shutdown
from model import tabular
from model.registry import CHAMPION, Registry
from tests.app.conftest import app_settings, wait_for
from tests.conftest import registry_config_for

MODEL = "wine-dags"
DB = "tabular_test"
TABULAR = {"task": "tabular", "train": {"estimator": "logistic_regression", "hyperparameters": {}}}


def params_file(path, **sections) -> str:
    """config/params.yaml with sections replaced: how a user points the platform at a table."""
    import yaml

    from config.settings import ROOT

    raw = yaml.safe_load((ROOT / "config" / "params.yaml").read_text())
    for section, value in sections.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def table_env(root: Path, servers, model: str, db: str, params: str) -> dict[str, str]:
    """The environment a user's .env gives the DAG tasks for a table kept in `root`."""
    return {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": db,
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MODEL_NAME": model,
        "EXPERIMENT_NAME": model,
        "DATA_DIR": str(root / "data"),
        "DATA_SOURCE_DIR": str(root),
        "MODEL_CACHE_DIR": str(root / "cache"),
        "PARAMS_PATH": params,
    }


@pytest.fixture(scope="module")
def wine_env(servers, tmp_path_factory):
    root = tmp_path_factory.mktemp("tabular")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in table_env(root, servers, MODEL, DB, params_file(root / "params.yaml", **TABULAR)).items():
            patch.setenv(key, value)
        yield root


@pytest.fixture(scope="module")
def wine_champion(dagbag, wine_env, servers):
    run = dagbag.get_dag("ml_pipeline").test()
    assert run.state == "success"
    champion = Registry(registry_config_for(servers, MODEL)).by_alias(CHAMPION)
    assert champion is not None and champion.tags["task"] == "tabular"
    assert champion.tags["validation_outcome"] == "promoted"
    return champion


@contextmanager
def batch_app(servers, tmp: Path, model: str, db: str) -> Iterator[Flask]:
    """The app serving `model`'s champion, its batch runs recorded in extensions["triggered"], not started.

    Its directories are under `tmp`, none of them the workers': batch files go through MongoDB.
    """
    application = create_app(app_settings(servers, tmp, model, db))
    wait_for(lambda: application.extensions["models"].current is not None, message=f"the {model} champion to load")
    triggered: list[dict] = []
    application.extensions["batch_trigger"] = lambda conf, run_id: triggered.append(conf) or run_id
    application.extensions["triggered"] = triggered
    try:
        yield application
    finally:
        shutdown(application)


@pytest.fixture
def wine_app(servers, wine_champion, wine_env, tmp_path):
    with batch_app(servers, tmp_path, MODEL, DB) as application:
        yield application


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    wine = tabular.example_wine().drop(columns=["cultivar"])
    return wine.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)


def test_a_tabular_model_is_served_with_its_schema(wine_app, wine_champion, mongo_client):
    client = wine_app.test_client()
    info = client.get("/model-info").get_json()
    assert info["task"] == "tabular" and info["version"] == wine_champion.version
    assert info["signature"]["inputs"] and "region" in info["signature"]["inputs"]
    row = rows(1).iloc[0].to_dict()
    response = client.post("/predict", json={"instances": [row, {**row, "region": "atlantis"}]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert {p["label"] for p in body["predictions"]} <= {"barbera", "barolo", "grignolino"}
    assert wine_app.extensions["prediction_log"].flush()
    stored = mongo_client[DB].predictions.find_one({"_id": body["predictions"][0]["id"]})
    assert stored["features"]["region"] == row["region"] and stored["features"]["alcohol"] == row["alcohol"]

    for bad, field in (
        ({k: v for k, v in row.items() if k != "hue"}, "instances[0].hue"),
        ({**row, "hue": "pale"}, "instances[0].hue"),
        ({**row, "colour": 1.0}, "instances[0].colour"),
    ):
        response = client.post("/predict", json={"instances": [bad]})
        assert response.status_code == 422 and response.get_json()["field"] == field, response.get_json()
    image = client.post("/predict", json={"image": "iVBORw0KGgo="})
    assert image.status_code == 422 and "instances" in image.get_json()["message"]

    page = client.get("/").get_data(as_text=True)
    assert 'name="alcohol"' in page and '<option value="north">' in page, "the form comes from the signature"


ROWS = 7_000  # two chunks (CHUNK_ROWS is 5,000), the second one partial


def test_a_batch_of_several_chunks_is_scored_and_logged(wine_app, dagbag, mongo_client, wine_champion):
    client = wine_app.test_client()
    upload = rows(ROWS).to_csv(index=False).encode()
    response = client.post("/batches", data={"file": (io.BytesIO(upload), "wine.csv")})
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]
    assert response.get_json()["status"] == "pending"
    assert client.get(f"/batches/{batch_id}").get_json()["status"] == "pending"
    assert client.get(f"/batches/{batch_id}/result").status_code == 409

    run = dagbag.get_dag("score_batch").test(run_conf=wine_app.extensions["triggered"][-1])
    assert run.state == "success"
    status = client.get(f"/batches/{batch_id}").get_json()
    assert status["status"] == "succeeded", status
    assert status["rows"] == status["scored"] == ROWS and status["model_version"] == wine_champion.version
    predictions = mongo_client[DB].predictions
    assert predictions.count_documents({"batch_id": batch_id, "source": "batch"}) == ROWS
    result = pd.read_csv(io.BytesIO(client.get(f"/batches/{batch_id}/result").data))
    assert len(result) == ROWS and result["prediction_id"].is_unique
    assert predictions.count_documents({"_id": {"$in": result["prediction_id"].head(100).tolist()}}) == 100
    assert np.allclose(result["alcohol"], rows(ROWS)["alcohol"])

    rerun = dagbag.get_dag("score_batch").test(run_conf=wine_app.extensions["triggered"][-1])
    assert rerun.state == "success"
    assert predictions.count_documents({"batch_id": batch_id}) == ROWS, "a re-run duplicates nothing"


def test_a_failing_batch_ends_failed_with_its_reason(wine_app, dagbag):
    client = wine_app.test_client()
    frame = rows(50).astype({"alcohol": object})
    frame.loc[16, "alcohol"] = "abc"
    response = client.post("/batches", data={"file": (io.BytesIO(frame.to_csv(index=False).encode()), "bad.csv")})
    batch_id = response.get_json()["id"]
    run = dagbag.get_dag("score_batch").test(run_conf=wine_app.extensions["triggered"][-1])
    assert run.state == "failed"
    status = client.get(f"/batches/{batch_id}").get_json()
    assert status["status"] == "failed"
    assert "row 17" in status["error"] and "'alcohol'" in status["error"], status["error"]

    wrong_kind = client.post("/batches", data={"file": (io.BytesIO(b"PK"), "images.zip")})
    assert wrong_kind.status_code == 415 and "tabular model" in wrong_kind.get_json()["message"]


def test_a_batch_waits_for_airflow_then_starts_or_fails_never_pending_forever(wine_app):
    calls: list[str] = []

    def unreachable(conf, run_id):
        calls.append(run_id)
        raise ConnectionError("connection refused")

    wine_app.extensions["batch_trigger"] = unreachable
    dispatcher = wine_app.extensions["batch_dispatcher"]
    dispatcher.retry = timedelta(0)
    client = wine_app.test_client()
    upload = rows(5).to_csv(index=False).encode()
    first = client.post("/batches", data={"file": (io.BytesIO(upload), "a.csv")})
    assert first.status_code == 202 and "keeps trying" in first.get_json()["message"], first.get_json()
    status = client.get(f"/batches/{first.get_json()['id']}").get_json()
    assert status["status"] == "pending" and "connection refused" in status["trigger_error"]

    wine_app.extensions["batch_trigger"] = lambda conf, run_id: calls.append(run_id) or run_id  # Airflow is back
    assert dispatcher.sweep() >= 1
    status = client.get(f"/batches/{first.get_json()['id']}").get_json()
    assert status["triggered_at"] is not None and status["trigger_error"] is None
    assert calls.count(f"batch__{first.get_json()['id']}") == 2

    wine_app.extensions["batch_trigger"] = unreachable
    second = client.post("/batches", data={"file": (io.BytesIO(upload), "b.csv")}).get_json()["id"]
    dispatcher.give_up = timedelta(0)
    dispatcher.sweep()
    status = client.get(f"/batches/{second}").get_json()
    assert status["status"] == "failed" and "did not accept the score_batch run" in status["error"], status


def test_run_conf_cannot_change_the_source_or_the_gate(dagbag, wine_env):
    secret = wine_env / "secret.txt"
    secret.write_text("FERNET_KEY=do-not-echo-me\n")
    for params in ({"tabular": {"source": str(secret)}}, {"promotion": {"min_accuracy": 0}}, {"task": "tabular"}):
        run = dagbag.get_dag("ingest_data").test(run_conf={"params": params})
        assert run.state == "failed", params
        (ti,) = run.get_task_instances()
        assert ti.try_number == 1, "refused at once, not retried"
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    assert not any("do-not-echo-me" in p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "conf",
    [{"path": "/etc"}, {"hash": "0123456789abcdef-s42-h20"}, {"hash": "../../etc"}, {"version": "1", "path": "/etc"}],
)
def test_a_run_naming_a_snapshot_path_or_an_unknown_digest_fails_at_once(dagbag, wine_env, conf):
    dag_id = "validate_model" if "version" in conf else "train_model"
    run = dagbag.get_dag(dag_id).test(run_conf=conf)
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.try_number == 1, "retrying cannot find a snapshot that is not there"


def test_malformed_training_data_fails_ingest_without_retrying(dagbag, wine_env, monkeypatch):
    bad = wine_env / "bad.csv"
    bad.write_text("alcohol,region,cultivar\n13.1,north,barolo\n12.0,south\n1,2,3,4\n")
    monkeypatch.setenv("PARAMS_PATH", params_file(wine_env / "bad.yaml", **TABULAR, tabular={"source": str(bad)}))
    run = dagbag.get_dag("ingest_data").test()
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.try_number == 1, "bad data is not retried"
