"""Hot swap under load, and a MongoDB outage that loses nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from mlflow import MlflowClient

from app import create_app, shutdown
from app.prediction_log import PredictionLog
from model.ids import time_ordered_ids
from model.kinds.digits import load_digits_dataset
from model.registry import CHAMPION
from model.store import window_statistics
from ops import services
from tests.app.conftest import ADMIN_TOKEN, app_settings, wait_for
from tests.conftest import trust_champion, vouch

ROWS = load_digits_dataset().X[:4].tolist()


def test_hot_swap_under_load(servers, champion, db, tmp_path):
    client = MlflowClient(servers.mlflow.url)
    source = f"models:/{champion['model_name']}/{champion['version']}"
    first = client.copy_model_version(source, "digits-swap").version
    second = client.copy_model_version(source, "digits-swap").version
    client.set_registered_model_alias("digits-swap", CHAMPION, first)
    for version in (first, second):  # no gate ran for these copies: record what it would have
        vouch(db, servers.mlflow.url, "digits-swap", version, tmp_path)

    app = create_app(app_settings(servers, tmp_path, "digits-swap", db.name, model_poll_seconds=3600))
    try:
        wait_for(lambda: app.extensions["models"].current is not None)
        statuses: list[int] = []
        versions: list[str] = []
        stop = threading.Event()

        def load() -> None:
            c = app.test_client()
            while not stop.is_set():
                r = c.post("/predict", json={"instances": ROWS})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json["model"]["version"])

        worker = threading.Thread(target=load)
        worker.start()
        wait_for(lambda: len(statuses) > 20, message="load before the swap")
        client.set_registered_model_alias("digits-swap", CHAMPION, second)
        reload = app.test_client().post("/admin/reload", headers={"X-Admin-Token": ADMIN_TOKEN})
        wait_for(lambda: versions and versions[-1] == str(second), message="the new version to serve")
        count_at_swap = len(statuses)
        wait_for(lambda: len(statuses) > count_at_swap + 20, message="load after the swap")
        stop.set()
        worker.join()
    finally:
        shutdown(app)
    assert reload.json == {"changed": True, "version": str(second), "previous": str(first)}
    assert set(statuses) == {200}, f"{statuses.count(200)} ok of {len(statuses)}"
    assert versions[0] == str(first) and versions[-1] == str(second)
    print(f"hot swap: {len(statuses)} requests, all 200, versions {first} -> {second}")


def test_mongo_outage_loses_nothing_and_writes_nothing_twice(servers, champion, tmp_path):
    """Stop the MongoDB-wire server, predict N times (all 200), restart it: exactly N new documents."""
    port = services.free_port()
    mongo = services.mongo(port, str(tmp_path / "mongo-data"), tmp_path / "mongo.log")
    proc = services.start(mongo)
    services.wait_healthy(mongo, proc)
    app = create_app(
        app_settings(servers, tmp_path, champion["model_name"], "outage", mongo_uri=mongo.url, mongo_timeout_ms=500)
    )
    db = app.extensions["db"]
    trust_champion(db, champion)
    try:
        wait_for(lambda: app.extensions["models"].current is not None)
        c = app.test_client()
        before = [c.post("/predict", json={"instances": [ROWS[0]]}).json["predictions"][0]["id"] for _ in range(10)]
        assert app.extensions["prediction_log"].flush()
        wait_for(lambda: db.predictions.count_documents({}) == 10, message="the first 10 documents")

        services.stop_group(proc.pid)
        during = []
        for _ in range(50):
            r = c.post("/predict", json={"instances": [ROWS[1]]})
            assert r.status_code == 200, r.json
            during.append(r.json["predictions"][0]["id"])
        wait_for(lambda: app.extensions["prediction_log"].outbox.pending() > 0, message="records in the outbox")
        health = c.get("/health")
        assert health.status_code == 200, "a MongoDB outage degrades the service, it does not stop it"
        assert health.json["mongodb"]["ok"] is False

        proc = services.start(mongo)
        services.wait_healthy(mongo, proc)
        wait_for(
            lambda: app.extensions["prediction_log"].outbox.pending() == 0, timeout=60, message="the outbox to drain"
        )
        wait_for(lambda: db.predictions.count_documents({}) == 60, timeout=30, message="60 documents")
        ids = [d["_id"] for d in db.predictions.find({}, {"_id": 1})]
        assert sorted(ids) == sorted(before + during), "exactly one document per request"
        stats = app.test_client().get("/statistics").json
        assert stats["total"] == 60, "rollups count each record once"
        assert c.get("/health").json["mongodb"]["ok"] is True
        print(f"outage: 10 before, 50 during (all 200), {len(ids)} documents after, 0 duplicates")
    finally:
        shutdown(app)
        services.stop_group(proc.pid)


def test_records_beyond_the_memory_bound_spill_to_disk_and_all_arrive(db, tmp_path):
    """A worker holds LOG_QUEUE_SIZE records in memory; while MongoDB lags, more go to the outbox, not lost."""
    plog = PredictionLog(lambda: db, tmp_path / "outbox", queue_size=1_000, flush_seconds=0.05)
    now = datetime.now(UTC)
    submitted = []
    for label in range(3):  # the writer is not started: the first 600 fit, the next two submits do not
        ids = time_ordered_ids(600)
        records = [{"_id": i, "kind": "prediction", "ts": now, "model_name": "m", "model_version": "1",
                    "label": label, "confidence": 0.9, "latency_ms": 1.0} for i in ids]  # fmt: skip
        plog.submit(records)
        submitted += ids
    assert plog.depth() == 600
    assert plog.outbox.pending() > 0
    plog.start()
    try:
        wait_for(lambda: db.predictions.count_documents({}) == 1_800, timeout=30, message="1,800 documents")
    finally:
        plog.close()
    assert sorted(d["_id"] for d in db.predictions.find({}, {"_id": 1})) == sorted(submitted)
    stats = window_statistics(db, now - timedelta(hours=1))
    assert stats["total"] == 1_800 and stats["per_label"] == {"0": 600, "1": 600, "2": 600}
