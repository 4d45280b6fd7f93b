"""Answering and recording one request's rows: the model's answers, their records in the prediction log.

`record` is all a view calls: it asks the model (model/prediction.py owns the answers and the
record's layout), gives each row a time-ordered id, and hands the records to this process's log
(app/prediction_log/), encoded in one pass when the rows allow it (app/records.py), with the
rollup increments that go with them. The view only translates HTTP.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from app.records import encode_rows
from app.requests_log import request_id
from model import prediction
from model.champion import Model
from model.ids import time_ordered_ids
from model.kinds import Inputs
from model.statistics import request_increments
from model.store import PREDICTIONS

_ENCODE_ALL_AT_ONCE = 32  # from this many rows of numbers, a request's records are encoded in one pass


def record(
    model: Model, inputs: Inputs, source: str, started: float, name: str | None = None
) -> tuple[list[dict[str, Any]], float, str | None]:
    """The answers as /predict gives them, the latency, and the token that lets the caller send feedback."""
    ext = current_app.extensions
    answers = prediction.answer(model, inputs.X)
    ids = time_ordered_ids(len(answers.labels))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    token = None
    if ext["settings"].log_predictions:
        token, now = secrets.token_urlsafe(16), datetime.now(UTC)
        common = {
            "kind": "prediction",
            "feedback_key": feedback_key(token),
            "ts": now,
            "model_name": model.name,
            "model_version": model.version,
            "source": source,
            "request_id": request_id(),
            "latency_ms": latency_ms,
            **({"name": name} if name is not None else {}),
        }
        log = ext["prediction_log"]
        encoded = None
        if len(ids) >= _ENCODE_ALL_AT_ONCE and inputs.rows is None and answers.best is not None:
            encoded = encode_rows(
                PREDICTIONS, common, prediction.columns(ids, inputs.input_hashes, inputs.X, answers), len(ids)
            )
        if encoded is not None:
            assert answers.best is not None and answers.confidence is not None
            rollups = request_increments(
                now, model.name, model.version, model.labels, answers.best, answers.confidence, latency_ms
            )
            log.submit_encoded(PREDICTIONS, encoded[0], encoded[1], ids, rollups)
        else:
            per_row: dict[str, list[Any]] = {"input_hash": inputs.input_hashes}
            if ext["settings"].store_images and any(image is not None for image in inputs.images):
                per_row["image"] = inputs.images
            rows = inputs.rows if inputs.rows is not None else inputs.X.tolist()
            log.submit(prediction.documents(common, ids, rows, answers.outputs, per_row))
    metrics = ext["metrics"]
    metrics.latency.labels(source).observe(latency_ms / 1000)
    for label, count in Counter(answers.labels).items():
        metrics.predictions.labels(str(label), model.version).inc(count)
    unsure = None
    if answers.proba is not None:
        unsure = model.kind.unsure(answers.proba, inputs.X, model.info.get("unsure_below") or prediction.UNSURE_BELOW)
    return answers.public(ids, model.labels, unsure), latency_ms, token


def feedback_key(token: str) -> str:
    """What a record keeps of its feedback token: a hash, so reading the log does not grant feedback."""
    return hashlib.sha256(token.encode()).hexdigest()
