"""Requests that used to cost a 500, a worker's memory or a second of a sync worker (issue #15, items 10-14)."""

from __future__ import annotations

from app.prediction_log import PredictionLog
from model.ids import time_ordered_ids
from tests.app.conftest import app_settings, b64, png_bytes, wait_for
from tests.app.test_prediction_log import records
from tests.conftest import trust_champion


def test_deeply_nested_json_is_a_400_not_a_500(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["error"] == "invalid_json"


def test_a_lone_surrogate_is_refused_before_anything_is_predicted(client):
    from model.kinds.digits import load_digits_dataset

    image = b64(png_bytes(load_digits_dataset().X[0]))
    body = '{"name": "\\ud800", "data": "' + image + '"}'
    response = client.post("/inference/image", data=body, content_type="application/json")
    assert response.status_code == 400, response.json
    assert "surrogate" in response.json["message"] or response.json["error"] == "invalid_json"


def test_a_long_name_is_refused_with_its_limit(client):
    from model.kinds.digits import load_digits_dataset

    image = b64(png_bytes(load_digits_dataset().X[0]))
    response = client.post("/inference/image", json={"name": "x" * 10_000, "data": image})
    assert response.status_code == 422 and response.json["field"] == "name"
    assert "at most 255" in response.json["message"]
    assert client.post("/inference/image", json={"name": "digit.png", "data": image}).status_code == 200


class CountingCollection:
    def __init__(self, real) -> None:
        self.real, self.calls = real, 0

    def find_one(self, *args, **kwargs):
        self.calls += 1
        return self.real.find_one(*args, **kwargs)


class CountingDb:
    def __init__(self, real) -> None:
        self.real, self.predictions = real, CountingCollection(real["predictions"])

    def __getitem__(self, name):
        return self.predictions if name == "predictions" else self.real[name]


def test_an_unknown_old_id_is_looked_up_once_not_polled(app, client):
    counting = CountingDb(app.extensions["db"])
    app.extensions["db"] = counting
    old = "01890000-0000-7000-8000-000000000000"  # 2023: cannot be waiting in another worker's queue
    assert client.get(f"/predictions/{old}").status_code == 404
    assert counting.predictions.calls == 1
    future = time_ordered_ids(1)[0].replace(time_ordered_ids(1)[0][:8], "ffffffff")
    assert client.get(f"/predictions/{future}").status_code == 404
    assert counting.predictions.calls == 2, "an id from the future is not waited for either"
    young = time_ordered_ids(1)[0]  # just made: another worker may still hold it, so it is polled
    assert client.get(f"/predictions/{young}").status_code == 404
    assert counting.predictions.calls > 3


def test_the_recent_cache_is_bounded_by_bytes(db, tmp_path):
    plog = PredictionLog(lambda: db, tmp_path, recent_max_bytes=20_000)
    plog.start()  # without a writer, close() waited its whole 10 s timeout for the queue to drain
    for _ in range(20):
        plog.submit(records(10))
    assert 0 < plog._recent_bytes <= 20_000
    assert len(plog._recent) < 200
    plog.close()


def test_refused_requests_do_not_count_as_prediction_errors(servers, champion, db, tmp_path):
    from app import create_app, shutdown

    trust_champion(db, champion)
    app = create_app(app_settings(servers, tmp_path, champion["model_name"], db.name, api_key="k-123456789012"))
    try:
        wait_for(lambda: app.extensions["models"].current is not None)
        client = app.test_client()
        for _ in range(20):
            assert client.post("/predict", json={"instances": [[0] * 64]}).status_code == 401
        ok = client.post("/predict", json={"instances": [[0] * 64]}, headers={"X-API-Key": "k-123456789012"})
        assert ok.status_code == 200
        assert app.extensions["prediction_log"].flush()
        stats = client.get("/statistics?window=24h", headers={"X-API-Key": "k-123456789012"}).json
    finally:
        shutdown(app)
    assert stats["total"] == 1 and stats["rejected"] == 20
    assert stats["errors"] == 0 and stats["error_rate"] == 0.0, "200 unauthenticated requests once made it 0.995"
