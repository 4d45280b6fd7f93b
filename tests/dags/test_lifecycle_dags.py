"""The lifecycle DAGs run with dag.test() against the session's real MongoDB-wire and MLflow servers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry
from tests.conftest import registry_config_for

MODEL = "digits-dags"


@pytest.fixture
def platform_env(servers, monkeypatch, tmp_path):
    env = {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": "dags_test",
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MODEL_NAME": MODEL,
        "EXPERIMENT_NAME": MODEL,
        "DATA_DIR": str(tmp_path / "data"),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run(dagbag, dag_id: str, conf: dict | None = None):
    dag_run = dagbag.get_dag(dag_id).test(run_conf=conf or {})
    return dag_run


def test_asset_chain_promotes_then_rejects_a_worse_model(dagbag, platform_env, mongo_client, servers, monkeypatch):
    registry = Registry(registry_config_for(servers, MODEL))
    db = mongo_client["dags_test"]
    db.model_events.delete_many({})

    ingest = run(dagbag, "ingest_data")
    assert ingest.state == "success"
    records = list(db["snapshots.files"].find({"metadata.role": "snapshot"}))
    assert len(records) == 1, "the snapshot is stored in MongoDB"
    digest = records[0]["_id"]
    assert (Path(platform_env["DATA_DIR"]) / "snapshots" / digest / "manifest.json").is_file(), "ingest's host cache"

    # train and validate on another host: its own, empty, data and cache directories
    other = Path(platform_env["DATA_DIR"]).parent / "other-host"
    monkeypatch.setenv("DATA_DIR", str(other / "data"))
    monkeypatch.setenv("MODEL_CACHE_DIR", str(other / "cache"))
    # a smaller network than the default: the chain is under test here, not the model (it still clears 0.95)
    quick = {"train": {"estimator": "mlp", "hyperparameters": {"hidden_layer_sizes": [64], "max_iter": 100}}}
    train = run(dagbag, "train_model", {"hash": digest, "params": quick})
    assert train.state == "success"
    challenger = registry.by_alias(CHALLENGER)
    assert challenger is not None
    assert (other / "data" / "snapshots" / digest / "manifest.json").is_file(), "read through the other host's cache"

    shutil.rmtree(other)  # a third host, again with nothing on disk
    validate = run(dagbag, "validate_model", {"version": challenger.version, "hash": digest})
    assert validate.state == "success"
    champion = registry.by_alias(CHAMPION)
    assert champion is not None and champion.version == challenger.version
    assert champion.tags["dataset_hash"] == digest
    assert champion.tags["validation_outcome"] == "promoted"
    assert float(champion.tags["validation_accuracy"]) >= 0.95
    event = db.model_events.find_one({"version": champion.version, "outcome": "promoted"})
    assert event["outcome"] == "promoted" and event["dataset_hash"] == digest

    # the same chain in one run, with an estimator that cannot pass the gate
    worse = run(dagbag, "ml_pipeline", {"params": {"train": {"estimator": "dummy", "hyperparameters": {}}}})
    assert worse.state == "success", "a rejection is a successful run that records the rejection"
    rejected = registry.by_alias(CHALLENGER)
    assert rejected.version != champion.version
    assert registry.by_alias(CHAMPION).version == champion.version, "the champion stays"
    assert registry.version(rejected.version).tags["validation_outcome"] == "rejected"
    event = db.model_events.find_one({"version": rejected.version, "outcome": "rejected"})
    assert event["outcome"] == "rejected" and "does not beat the majority-class baseline" in event["reason"]
    assert registry.by_alias(PREVIOUS) is None


def test_a_run_naming_a_path_or_an_unknown_digest_says_what_to_do(platform_env, mongo_client):
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from config.settings import Settings
    from plugins.mlops_platform import tasks

    old = {"dag_run": SimpleNamespace(conf={"path": "/opt/mlops/var/data/snapshots/0123456789abcdef-s42-h20"})}
    with pytest.raises(AirflowFailException, match=r'named by their digest; trigger with conf \{"hash"'):
        tasks.upstream(old, ("hash",))
    with pytest.raises(AirflowFailException, match="no snapshot 0000000000000000-s1-h20 in MongoDB.*ingest_data"):
        tasks.snapshot_path(Settings(), mongo_client["dags_test"], {"hash": "0000000000000000-s1-h20"})
    with pytest.raises(AirflowFailException, match="is not a snapshot digest"):
        tasks.snapshot_path(Settings(), mongo_client["dags_test"], {"hash": "../../etc"})
