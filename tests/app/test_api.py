"""Routes through the Flask test client, with the session's real MongoDB-wire and MLflow servers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.kinds.digits import load_digits_dataset
from tests.app.conftest import ADMIN_TOKEN, app_settings, b64, png_bytes, wait_for
from tests.conftest import trust_champion

DIGITS = load_digits_dataset()


def flush(app) -> None:
    assert app.extensions["prediction_log"].flush(10), "the log writer did not drain its queue"


def test_predict_instances_batch(client, app, db, champion):
    rows = DIGITS.X[:20]
    response = client.post("/predict", json={"instances": rows.tolist()}, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["model"] == {"name": champion["model_name"], "version": champion["version"], "labels": list(range(10)),
                             "task_type": "classification"}  # fmt: skip
    labels = [p["label"] for p in body["predictions"]]
    assert np.mean(np.array(labels) == DIGITS.y[:20]) >= 0.9
    first = body["predictions"][0]
    assert abs(sum(first["probabilities"]) - 1) < 1e-3
    assert (
        first["confidence"] == max(first["probabilities"])
        or abs(first["confidence"] - max(first["probabilities"])) < 1e-5
    )
    assert [t["label"] for t in first["top"]][0] == first["label"] and len(first["top"]) == 3
    assert all(p["unsure"] is ("unsure_reason" in p) for p in body["predictions"])
    assert all(p["unsure"] for p in body["predictions"] if p["confidence"] < 0.5)
    blends = (DIGITS.X[:60] + DIGITS.X[60:120]) / 2  # two digits over each other: some answers are guesses
    guesses = client.post("/predict", json={"instances": blends.tolist()}).json["predictions"]
    assert any(p["unsure"] for p in guesses) and all(p["unsure"] for p in guesses if p["confidence"] < 0.5)
    assert all(p["unsure"] is ("unsure_reason" in p) for p in guesses)
    flush(app)
    docs = list(db.predictions.find({"request_id": "req-1"}))
    assert len(docs) == 20, "every row of a batch is its own record"
    doc = db.predictions.find_one({"_id": first["id"]})
    assert doc["model_version"] == champion["version"]
    assert doc["features"] == rows[0].tolist(), "the record carries the 64 input features"
    assert doc["source"] == "predict" and doc["label"] == first["label"] and len(doc["input_hash"]) > 0


def test_predict_base64_and_multipart_image(client, app, db):
    image = png_bytes(DIGITS.X[0])
    by_json = client.post("/predict", json={"image": b64(image)})
    by_file = client.post(
        "/predict", data={"file": (io.BytesIO(image), "digit.png")}, content_type="multipart/form-data"
    )
    assert by_json.status_code == 200 and by_file.status_code == 200
    assert by_json.json["predictions"][0]["label"] == by_file.json["predictions"][0]["label"] == DIGITS.y[0]
    # data-URL prefix and line-wrapped base64 are accepted too
    wrapped = "data:image/png;base64," + "\n".join(b64(image)[i : i + 60] for i in range(0, len(b64(image)), 60))
    assert client.post("/predict", json={"image": wrapped}).status_code == 200
    assert by_json.json["predictions"][0]["unsure"] is False


def test_an_upload_unlike_a_digit_is_answered_as_a_flagged_guess(client):
    """A filled page or three digits side by side: the best guess, with `unsure` and why (the digits kind's rules)."""
    filled = Image.new("L", (100, 100), 255)
    filled.paste(Image.new("L", (90, 90), 0), (5, 5))
    wide = Image.new("L", (400, 100), 255)
    for left in (20, 150, 280):
        wide.paste(Image.new("L", (25, 80), 0), (left, 10))
    for image, reason in ((filled, "covers"), (wide, "wider than tall")):
        out = io.BytesIO()
        image.save(out, format="PNG")
        answer = client.post("/predict", json={"image": b64(out.getvalue())}).json["predictions"][0]
        assert answer["unsure"] is True and reason in answer["unsure_reason"], answer
        assert answer["label"] in range(10), "the best guess is still given"


def test_get_prediction_and_feedback(client, app, db):
    answer = client.post("/predict", json={"instances": [DIGITS.X[5].tolist()]}).json
    pid, token = answer["predictions"][0]["id"], answer["feedback_token"]
    record = client.get(f"/predictions/{pid}")
    assert record.status_code == 200
    assert record.json["id"] == pid and record.json["prediction"] == record.json["label"]
    assert "feedback_key" not in record.json, "reading the log does not hand out what grants feedback"
    truth = int(DIGITS.y[5])
    feedback = client.post(f"/predictions/{pid}/feedback", json={"label": truth, "token": token})
    assert feedback.status_code == 200
    assert feedback.json["correct"] is (record.json["label"] == truth)
    flush(app)
    stored = db.feedback.find_one({"_id": pid})
    assert stored["label"] == truth and stored["features"] == DIGITS.X[5].tolist()
    wrong = (truth + 1) % 10
    again = client.post(f"/predictions/{pid}/feedback", json={"label": wrong, "token": token})
    assert again.json["correct"] is (record.json["label"] == wrong), "feedback is judged against the prediction"
    assert client.get(f"/predictions/{pid}").json == record.json, "the prediction, not the feedback, is returned"


def test_compat_inference_route(client, app):
    response = client.post("/inference/image", json={"name": "three.png", "data": b64(png_bytes(DIGITS.X[3]))})
    assert response.status_code == 200
    uuid = response.json["uuid"]
    flush(app)
    app.extensions["prediction_log"]._recent.clear()  # force the read to come from MongoDB
    stored = client.get(f"/predictions/{uuid}")
    assert stored.status_code == 200
    assert stored.json["prediction"] == DIGITS.y[3]
    assert stored.json["name"] == "three.png" and stored.json["source"] == "inference/image"


def test_statistics_match_what_was_sent(client, app):
    answer = client.post("/predict", json={"instances": DIGITS.X[:30].tolist()}).json
    sent = answer["predictions"]
    client.post("/predict", json={"instances": [[1] * 63]})  # one refused request (422)
    pid = sent[0]["id"]
    feedback = {"label": sent[0]["label"], "token": answer["feedback_token"]}
    labelled = client.post(f"/predictions/{pid}/feedback", json=feedback)
    assert labelled.status_code == 200
    flush(app)
    stats = client.get("/statistics?window=24h").json
    expected = {}
    for p in sent:
        expected[str(p["label"])] = expected.get(str(p["label"]), 0) + 1
    assert stats["total"] == 30
    assert stats["per_label"] == dict(sorted(expected.items()))
    assert stats["rejected"] == 1 and stats["errors"] == 0, "bad input is counted apart from failures"
    assert abs(stats["mean_confidence"] - np.mean([p["confidence"] for p in sent])) < 1e-4
    assert stats["feedback"] == {"count": 1, "correct": 1, "accuracy": 1.0}
    assert stats["latency_ms"]["p50"] is not None
    assert client.get("/statistics?window=forever").status_code == 422


def test_model_info(client, champion):
    info = client.get("/model-info").json
    assert info["name"] == champion["model_name"] and info["version"] == champion["version"]
    assert "champion" in info["aliases"]
    assert info["dataset_hash"] == champion["snapshot"]["hash"]
    assert info["metrics"]["holdout_accuracy"] >= 0.95
    assert info["signature"]["inputs"] and info["run_id"] and info["loaded_at"]
    assert "path" not in info, "the local cache path is this host's business"
    assert info["serving"]["engine"] == "onnxruntime", info["serving"]  # compiled at training, checked at load


def test_health_ready(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "ready" and response.json["mongodb"]["ok"] and response.json["mlflow"]["ok"]
    assert client.get("/readyz").json == {"status": "ready"} and client.get("/livez").status_code == 200


def test_readiness_follows_the_outbox_cap(client, app):
    plog = app.extensions["prediction_log"]
    cap = plog.max_outbox_bytes
    try:
        plog.max_outbox_bytes = plog.outbox_bytes  # as full as the cap: predictions would get 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "LOG_MAX_OUTBOX_BYTES" in ready.json["reason"]
        assert client.get("/health").status_code == 503
        assert client.get("/livez").status_code == 200, "full, but alive: no restart"
    finally:
        plog.max_outbox_bytes = cap


def test_health_without_a_champion(servers, db, tmp_path):
    from app import create_app, shutdown

    application = create_app(app_settings(servers, tmp_path, "no-such-model", db.name))
    try:
        client = application.test_client()
        wait_for(lambda: application.extensions["models"].last_check is not None, message="a registry check")
        health = client.get("/health")
        assert health.status_code == 503
        assert "no 'champion' alias" in health.json["reason"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json["reason"] == health.json["reason"]
        assert client.get("/livez").json == {"status": "alive"}
        predict = client.post("/predict", json={"instances": [DIGITS.X[0].tolist()]})
        assert predict.status_code == 503 and predict.json["error"] == "no_model"
    finally:
        shutdown(application)


def test_metrics_and_openapi(client):
    client.post("/predict", json={"instances": [DIGITS.X[0].tolist()]})
    metrics = client.get("/metrics").data.decode()
    assert "mlops_predictions_total" in metrics and "mlops_log_queue_depth" in metrics
    spec = client.get("/openapi.json").json
    assert {"/predict", "/health", "/statistics", "/predictions/{prediction_id}"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_admin_reload_needs_the_token(client):
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"X-Admin-Token": "wrong"}).status_code == 401
    ok = client.post("/admin/reload", headers={"X-Admin-Token": ADMIN_TOKEN})
    assert ok.status_code == 200 and ok.json["changed"] is False


def test_api_key_when_configured(servers, champion, db, tmp_path):
    from app import create_app, shutdown

    trust_champion(db, champion)
    application = create_app(app_settings(servers, tmp_path, champion["model_name"], db.name, api_key="k-123456789012"))
    try:
        wait_for(lambda: application.extensions["models"].current is not None)
        client = application.test_client()
        payload = {"instances": [DIGITS.X[0].tolist()]}
        assert client.post("/predict", json=payload).status_code == 401
        assert client.post("/predict", json=payload, headers={"X-API-Key": "nope"}).status_code == 401
        assert client.post("/predict", json=payload, headers={"X-API-Key": "k-123456789012"}).status_code == 200
        assert client.get("/health").status_code == 200, "health stays open for probes"
        public = client.get("/model-info").json
        assert public["version"] and "labels" in public
        assert not {"path", "run_id", "tags", "digest"} & set(public), "the registry's details need the key"
        keyed = client.get("/model-info", headers={"X-API-Key": "k-123456789012"}).json
        assert keyed["run_id"] and keyed["tags"] and "path" not in keyed
    finally:
        shutdown(application)


@pytest.mark.parametrize("page", ["/", "/stats"])
def test_pages_render(client, page):
    response = client.get(page)
    assert response.status_code == 200 and b"<canvas" in response.data
