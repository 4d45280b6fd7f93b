"""One request id per request: taken or made, echoed, stored, and on every log line (issue #18, item 2)."""

from __future__ import annotations

import json
import logging
import re

from app.requests_log import JsonFormatter
from model.kinds.digits import load_digits_dataset
from tests.app.test_api import flush

ROW = load_digits_dataset().X[0].tolist()


def test_the_callers_request_id_is_echoed_stored_and_logged(client, app, db, caplog):
    caplog.set_level(logging.INFO)
    response = client.post("/predict", json={"instances": [ROW]}, headers={"X-Request-ID": "lb-7f3a.42"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "lb-7f3a.42"
    refused = client.post("/predict", json={"instances": [[1] * 63]}, headers={"X-Request-ID": "lb-7f3a.43"})
    assert refused.status_code == 422 and refused.headers["X-Request-ID"] == "lb-7f3a.43"
    flush(app)
    assert db.predictions.find_one({"_id": response.json["predictions"][0]["id"]})["request_id"] == "lb-7f3a.42"
    assert db.predictions.find_one({"kind": "error", "request_id": "lb-7f3a.43"}) is not None
    access = [r for r in caplog.records if r.name == "app.access" and getattr(r, "request_id", None) == "lb-7f3a.42"]
    assert access and access[0].fields == {
        "method": "POST", "path": "/predict", "status": 200, "duration_ms": access[0].fields["duration_ms"]
    }  # fmt: skip

    line = json.loads(JsonFormatter().format(access[0]))
    assert line["request_id"] == "lb-7f3a.42" and line["status"] == 200 and line["logger"] == "app.access"


def test_a_missing_or_unusable_id_is_replaced_by_a_new_one(client):
    made = client.get("/livez").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/livez").headers["X-Request-ID"] != made, "one per request"
    for bad in ("has spaces", "x" * 200, "<script>"):
        echoed = client.get("/livez", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)
