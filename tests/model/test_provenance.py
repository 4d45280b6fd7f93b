"""Provenance: a version the gate did not vouch for is never unpickled, by the app, the gate, batch or monitor.

The attack the audit reproduced: whoever can write to MLflow registers a version whose pickle runs a
command, and moves `champion` to it by hand. Here the command creates a marker file; every test
checks the marker was never created, against the real MLflow server and the app under gunicorn.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from config.settings import Settings
from model import lifecycle, provenance
from model.registry import CHAMPION, Registry, RegistryConfig
from ops import services
from plugins.mlops_platform import monitor
from tests.conftest import start_ready_app, vouch

MODEL = "digits-provenance"


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps(_RunsCommand(marker))


def evil_version(client: MlflowClient, registry: Registry, good_version: str, marker: Path, tmp: Path) -> str:
    """A copy of a good version's files whose model.pkl runs `touch marker`, registered by hand."""
    files = registry.download_version(good_version, tmp / "good")
    evil = tmp / "evil"
    shutil.copytree(files, evil)
    (evil / "model.pkl").write_bytes(malicious_pickle(marker))
    experiment = client.get_experiment_by_name(MODEL) or client.get_experiment(client.create_experiment(MODEL))
    run = client.create_run(experiment.experiment_id)
    client.log_artifacts(run.info.run_id, str(evil), "model")
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id).version)


@pytest.fixture
def good(servers, champion, db, tmp_path):
    """MODEL with a vouched-for copy of the session champion as its champion."""
    client = MlflowClient(servers.mlflow.url)
    source = f"models:/{champion['model_name']}/{champion['version']}"
    version = str(client.copy_model_version(source, MODEL).version)
    client.set_registered_model_alias(MODEL, CHAMPION, version)
    vouch(db, servers.mlflow.url, MODEL, version, tmp_path)
    registry = Registry(RegistryConfig(servers.mlflow.url, MODEL, MODEL, http_retries=0))
    return {"client": client, "registry": registry, "version": version}


def test_digest_covers_every_file_its_name_and_content(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text("flavors: {}")
    (tmp_path / "m" / "model.pkl").write_bytes(b"abc")
    first = provenance.digest(tmp_path / "m")
    assert first.startswith("sha256:") and provenance.verify(tmp_path / "m", first, "m") == first
    (tmp_path / "m" / "model.pkl").write_bytes(b"abd")
    with pytest.raises(provenance.ProvenanceError, match="do not match"):
        provenance.verify(tmp_path / "m", first, "m")
    (tmp_path / "m" / "model.pkl").write_bytes(b"abc")
    (tmp_path / "m" / "extra.py").write_text("import os")
    assert provenance.digest(tmp_path / "m") != first, "an added file changes the digest"
    with pytest.raises(provenance.ProvenanceError, match="no digest was recorded"):
        provenance.verify(tmp_path / "m", None, "m")


def test_app_never_loads_a_champion_the_gate_did_not_vouch_for(servers, good, db, tmp_path):
    marker = tmp_path / "pwned"
    root = tmp_path / "app"
    env = {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": db.name,
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MODEL_NAME": MODEL,
        "MODEL_CACHE_DIR": str(root / "cache"),
        "OUTBOX_DIR": str(root / "outbox"),
        "MODEL_POLL_SECONDS": "0.5",
    }
    app, proc = start_ready_app(root, env)
    try:
        bad = evil_version(good["client"], good["registry"], good["version"], marker, tmp_path)
        good["client"].set_registered_model_alias(MODEL, CHAMPION, bad)  # by hand: no gate
        deadline = time.monotonic() + 30
        while bad not in (health := requests.get(f"{app.url}/health", timeout=5).json())["model"]["refused"]:
            assert time.monotonic() < deadline, services.tail(app.log, 30)
            time.sleep(0.2)
        time.sleep(1.5)  # a few more polls
        assert not marker.exists(), "the registry's pickle ran in the app"
        assert health["status"] == "ready" and health["model"]["version"] == good["version"], "the old model serves on"
        assert "no digest was recorded" in health["model"]["refused"][bad]
        ok = requests.post(f"{app.url}/predict", json={"instances": [[0.0] * 64]}, timeout=10)
        assert ok.status_code == 200 and ok.json()["model"]["version"] == good["version"]
        refusals = list(db.model_events.find({"kind": "provenance_refused", "version": bad, "loader": "app"}))
        assert len(refusals) == 1, "one record per refused version, not one per poll"
        assert "refused" in services.tail(app.log, 200) or "not loading" in services.tail(app.log, 200)
    finally:
        services.stop_group(proc.pid)


def test_batch_and_monitor_refuse_an_unvouched_champion(servers, good, db, tmp_path):
    marker = tmp_path / "pwned"
    bad = evil_version(good["client"], good["registry"], good["version"], marker, tmp_path)
    good["client"].set_registered_model_alias(MODEL, CHAMPION, bad)
    with pytest.raises(provenance.ProvenanceError):
        provenance.load_promoted(good["registry"], db, bad, tmp_path / "batch", "batch")
    settings = Settings(
        _env_file=None,
        mongo_uri=servers.mongo.url,
        mongo_db=db.name,
        mlflow_tracking_uri=servers.mlflow.url,
        model_name=MODEL,
        model_cache_dir=tmp_path / "cache",
        app_url=f"http://127.0.0.1:{services.free_port()}",
    )
    with pytest.raises(monitor.CheckFailed, match=f"champion v{bad} is not loaded"):
        monitor.check_champion(settings)
    assert not marker.exists()
    loaders = {e["loader"] for e in db.model_events.find({"kind": "provenance_refused", "version": bad})}
    assert loaders == {"batch", "monitor"}

    # a version whose recorded digest matches loads: the check is not a blanket refusal
    good["client"].set_registered_model_alias(MODEL, CHAMPION, good["version"])
    assert monitor.check_champion(settings)["status"] in ("ok", "warn")


def test_gate_rejects_a_challenger_whose_files_changed_after_training(servers, champion, db, tmp_path):
    registry = Registry(RegistryConfig(servers.mlflow.url, "digits-gate-tamper", "digits-gate-tamper", http_retries=0))
    params = champion["params"]
    params = params.model_copy(
        update={
            "train": params.train.model_copy(update={"hyperparameters": {"hidden_layer_sizes": [32], "max_iter": 50}})
        }
    )
    snapshot = champion["snapshot_path"]
    trained = lifecycle.train_and_register(params, snapshot, registry, db)
    registered = db.model_events.find_one({"kind": "registered", "version": trained["version"]})
    assert registered["digest"] == registry.version(trained["version"]).tags[provenance.DIGEST_TAG]

    # tamper with the stored artifact on the server's disk, after training recorded its digest
    marker = tmp_path / "pwned"
    source = registry.client.get_model_version_download_uri("digits-gate-tamper", trained["version"])
    stored = servers.root / "mlflow" / "artifacts" / source.split("mlflow-artifacts:/", 1)[1] / "model.pkl"
    assert stored.exists(), f"the registered model.pkl on the server's disk ({source})"
    stored.write_bytes(malicious_pickle(marker))
    decision = lifecycle.validate_and_promote(params, snapshot, trained["version"], registry, db, tmp_path / "val")
    assert decision["outcome"] == "rejected" and "do not match the recorded digest" in decision["reason"]
    assert not marker.exists(), "the gate unpickled the tampered challenger"
    assert registry.by_alias(CHAMPION) is None


def test_a_stale_cached_copy_of_the_same_version_is_fetched_again_not_loaded(servers, good, db, tmp_path):
    """The cache is keyed by version number: another registry, or a damaged copy, may have put other files
    there. Seen for real: a copy switched from an MLflow 2.7.1 server to a new MLflow 3 one served the old
    server's version 1 from its cache, because the new champion was a version 1 too."""
    from app import create_app, shutdown
    from tests.app.conftest import app_settings, wait_for

    marker = tmp_path / "pwned"
    stale = tmp_path / "model-cache" / MODEL / f"v{good['version']}"
    shutil.copytree(good["registry"].download_version(good["version"], tmp_path / "dl"), stale)
    (stale / "model.pkl").write_bytes(malicious_pickle(marker))
    # and a pointer to it, as the app writes after a load: from another registry whose v<same number> it was
    pointer = {"name": MODEL, "version": good["version"], "path": str(stale), "digest": provenance.digest(stale)}
    (stale.parent / "champion.json").write_text(json.dumps({**pointer, "registry": "http://127.0.0.2:9"}))
    app = create_app(app_settings(servers, tmp_path, MODEL, db.name))
    try:
        wait_for(lambda: app.extensions["models"].current is not None, message="the champion to load")
        assert app.extensions["models"].current.version == good["version"]
    finally:
        shutdown(app)
    assert not marker.exists()
    assert provenance.digest(stale) == provenance.recorded(db, MODEL, good["version"])
