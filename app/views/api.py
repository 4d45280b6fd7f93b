"""JSON API: predictions, the prediction log, feedback, health, model info, statistics, metrics."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request
from pymongo.errors import PyMongoError

from app.errors import ApiError, Forbidden, InvalidInput, NoModel, NotFound, Unauthorized
from app.inputs import Inputs, decode_base64, from_image_bytes, json_body, parse_predict
from app.openapi import documented, openapi_document
from app.records import encode_rows
from app.requests_log import request_id, request_started
from model import regression
from model.champion import Model
from model.ids import time_ordered_ids
from model.statistics import request_increments
from model.store import FEEDBACK, MONITORING_REPORTS, PREDICTIONS, window_statistics

bp = Blueprint("api", __name__)
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_WINDOW = re.compile(r"^(\d{1,4})([mhd])$")
_LOOKUP_WAIT_SECONDS = 1.0
MAX_NAME_LENGTH = 255  # a file name, as file systems allow
TOP = 3  # classes listed in each answer, most likely first
_ENCODE_ALL_AT_ONCE = 32  # from this many rows, app/records.py encodes a request's records in one go


def ext(name: str) -> Any:
    return current_app.extensions[name]


def require_api_key(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _has_api_key():
            raise Unauthorized("this route needs the API key in the X-API-Key header")
        return view(*args, **kwargs)

    return wrapper


def require_admin(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _is_admin():
            raise Unauthorized("admin routes need the ADMIN_TOKEN in the X-Admin-Token header")
        return view(*args, **kwargs)

    return wrapper


def _is_admin() -> bool:
    token = ext("settings").admin_token.get_secret_value()
    given = request.headers.get("X-Admin-Token") or _bearer()
    return bool(token and given and hmac.compare_digest(given.encode(), token.encode()))


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def serving_model() -> Model:
    model = ext("models").current
    if model is None:
        reason = ext("models").last_error or "no champion model has been loaded yet"
        raise NoModel(f"no model to serve: {reason}; it is picked up automatically once a champion exists")
    return model


# -- predictions -------------------------------------------------------------------------------------


@bp.post("/predict")
@documented(
    "Classify an image (multipart `file` or JSON `image` base64) or a batch of 64-number rows",
    request="PredictRequest",
    response="PredictResponse",
    errors=(401, 413, 415, 422, 503),
)
@require_api_key
def predict() -> Response:
    started = time.perf_counter()
    model = serving_model()
    settings = ext("settings")
    inputs = parse_predict(
        request, model, settings.max_batch_rows, settings.max_upload_bytes, settings.max_image_pixels
    )
    results, latency_ms, token = _predict_and_log(model, inputs, "predict", started)
    return jsonify(
        predictions=results,
        model={"name": model.name, "version": model.version, "labels": model.labels, "task_type": model.task_type},
        latency_ms=latency_ms,
        feedback_token=token,
    )


@bp.post("/inference/image")
@documented(
    "Compatibility route of the replaced system: classify a base64 image, answer its uuid",
    request="InferenceImageRequest",
    response="InferenceImageResponse",
    errors=(401, 413, 415, 422, 503),
)
@require_api_key
def predict_compat() -> Response:
    started = time.perf_counter()
    model = serving_model()
    settings = ext("settings")
    body = json_body(request)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidInput("name must be a string", field="name")
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"name is {len(name):,} characters; at most {MAX_NAME_LENGTH} are kept", field="name")
    if "data" not in body:
        raise InvalidInput('send {"name": "<file name>", "data": "<base64 image>"}', field="data")
    inputs = from_image_bytes(
        model, decode_base64(body["data"], "data"), "data", settings.max_upload_bytes, settings.max_image_pixels
    )
    results, _, token = _predict_and_log(model, inputs, "inference/image", started, name=name)
    return jsonify(uuid=results[0]["id"], feedback_token=token)


def _predict_and_log(
    model: Model, inputs: Inputs, source: str, started: float, name: str | None = None
) -> tuple[list[dict[str, Any]], float, str | None]:
    """The predictions, the latency, and the token that lets the caller send feedback on them."""
    if model.regression:
        return _regress_and_log(model, inputs, source, started, name)
    proba = model.predict_proba(inputs.X)
    best = proba.argmax(axis=1)
    labels = [model.labels[i] for i in best.tolist()]
    confidence = proba[np.arange(len(best)), best]
    confidences = confidence.tolist()
    rounded = proba.round(6)
    probabilities = rounded.tolist()
    ids = time_ordered_ids(len(labels))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    token = None
    if ext("settings").log_predictions:
        token, common = _common(model, source)
        encoded = None
        if len(ids) >= _ENCODE_ALL_AT_ONCE and inputs.rows is None and name is None:  # rows of numbers
            columns = {"_id": ids, "input_hash": inputs.input_hashes, "features": inputs.X, "label": labels,
                       "confidence": confidence, "probabilities": rounded,
                       "latency_ms": np.full(len(ids), latency_ms)}  # fmt: skip
            encoded = encode_rows(PREDICTIONS, common, columns, len(ids))
        if encoded is not None:
            rollups = request_increments(
                common["ts"], model.name, model.version, model.labels, best, confidence, latency_ms
            )
            ext("prediction_log").submit_encoded(PREDICTIONS, encoded[0], encoded[1], ids, rollups)
        else:
            outputs = [{"label": label, "confidence": c, "probabilities": p}
                       for label, c, p in zip(labels, confidences, probabilities, strict=True)]  # fmt: skip
            ext("prediction_log").submit(_records(common, inputs, name, ids, outputs, latency_ms))
    _observe(source, latency_ms, model.version, labels)
    ranked = np.argsort(-proba, axis=1, kind="stable")[:, :TOP]
    results = [
        {"id": i, "label": label, "confidence": c, "probabilities": p,
         "top": [{"label": model.labels[j], "confidence": p[j]} for j in order]}
        for i, label, c, p, order in zip(ids, labels, confidences, probabilities, ranked.tolist(), strict=True)
    ]  # fmt: skip
    return results, latency_ms, token


def _regress_and_log(
    model: Model, inputs: Inputs, source: str, started: float, name: str | None
) -> tuple[list[dict[str, Any]], float, str | None]:
    """A regressor's values, each with the model's conformal interval (model/regression.py)."""
    outputs = regression.answers(model.predict_values(inputs.X), model.half_width(), model.info.get("value_bins"))
    ids = time_ordered_ids(len(outputs))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    token = None
    if ext("settings").log_predictions:
        token, common = _common(model, source)
        ext("prediction_log").submit(_records(common, inputs, name, ids, outputs, latency_ms))
    _observe(source, latency_ms, model.version, ["(value)"] * len(ids))
    answers = [{"id": i, "value": o["value"], "interval": o["interval"]} for i, o in zip(ids, outputs, strict=True)]
    return answers, latency_ms, token


def _common(model: Model, source: str) -> tuple[str, dict[str, Any]]:
    """A request's feedback token, and what every record of the request shares."""
    token = secrets.token_urlsafe(16)
    return token, {
        "kind": "prediction",
        "feedback_key": _feedback_key(token),
        "ts": datetime.now(UTC),
        "model_name": model.name,
        "model_version": model.version,
        "source": source,
        "request_id": request_id(),
    }


def _observe(source: str, latency_ms: float, version: str, labels: list[Any]) -> None:
    metrics = ext("metrics")
    metrics.latency.labels(source).observe(latency_ms / 1000)
    for label, count in Counter(labels).items():
        metrics.predictions.labels(str(label), version).inc(count)


def _feedback_key(token: str) -> str:
    """What a record keeps of its feedback token: a hash, so reading the log does not grant feedback."""
    return hashlib.sha256(token.encode()).hexdigest()


def _records(
    common: dict[str, Any],
    inputs: Inputs,
    name: str | None,
    ids: list[str],
    outputs: list[dict[str, Any]],
    latency_ms: float,
) -> list[dict[str, Any]]:
    """One prediction-log record per row: metadata, the input features and the row's outputs (a label,
    its confidence and probabilities; or a value and its interval)."""
    rows = inputs.rows if inputs.rows is not None else inputs.X.tolist()
    store_images = ext("settings").store_images
    records = []
    for i, record_id in enumerate(ids):
        record = {
            "_id": record_id,
            **common,
            "input_hash": inputs.input_hashes[i],
            "features": rows[i],
            **outputs[i],
            "latency_ms": latency_ms,
        }
        if name is not None:
            record["name"] = name
        if store_images and inputs.images[i] is not None:
            record["image"] = inputs.images[i]
        records.append(record)
    return records


# -- the prediction log --------------------------------------------------------------------------------


@bp.get("/predictions/<prediction_id>")
@documented(
    "A stored prediction by id (also the replaced system's `GET /predictions/<uuid>`)",
    response="PredictionRecord",
    errors=(401, 404, 422),
)
@require_api_key
def get_prediction(prediction_id: str) -> Response:
    record = _find_prediction(prediction_id)
    return jsonify(_public(record))


@bp.post("/predictions/<prediction_id>/feedback")
@documented(
    "Store the true label of a prediction",
    request="FeedbackRequest",
    response="FeedbackResponse",
    errors=(401, 403, 404, 415, 422),
)
@require_api_key
def post_feedback(prediction_id: str) -> Response:
    """Feedback becomes training data, so only whoever got the prediction (its `feedback_token`) or an
    operator (ADMIN_TOKEN) may label it: an API key alone reads and predicts, it does not teach."""
    body = json_body(request)
    model = ext("models").current
    if model is not None and model.regression:
        return _value_feedback(prediction_id, body)
    label = body.get("label")
    allowed = model.labels if model else list(range(10))
    if isinstance(label, bool) or not isinstance(label, int | str) or label not in allowed:
        raise InvalidInput(f"label must be one of {allowed}, got {label!r}", field="label")
    record = _find_prediction(prediction_id)
    _check_feedback_right(record, body.get("token"))
    doc = {
        "_id": prediction_id,
        "prediction_id": prediction_id,
        "label": label,
        "predicted_label": record.get("label"),
        "correct": label == record.get("label"),
        "model_name": record.get("model_name"),
        "model_version": record.get("model_version"),
        "features": record.get("features"),
        "created_at": datetime.now(UTC),
    }
    ext("prediction_log").submit([doc], collection=FEEDBACK)
    return jsonify(prediction_id=prediction_id, label=label, correct=doc["correct"])


def _value_feedback(prediction_id: str, body: dict[str, Any]) -> Response:
    """A regressor's prediction is taught its true value; the record keeps the error made."""
    value = body.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f'send the true value as a finite number, {{"value": 12.5}}; got {value!r}', field="value")
    record = _find_prediction(prediction_id)
    _check_feedback_right(record, body.get("token"))
    predicted = record.get("value")
    doc = {
        "_id": prediction_id,
        "prediction_id": prediction_id,
        "value": float(value),
        "predicted_value": predicted,
        "error": None if predicted is None else float(value) - float(predicted),
        "model_name": record.get("model_name"),
        "model_version": record.get("model_version"),
        "features": record.get("features"),
        "created_at": datetime.now(UTC),
    }
    ext("prediction_log").submit([doc], collection=FEEDBACK)
    return jsonify(prediction_id=prediction_id, value=doc["value"], error=doc["error"])


def _check_feedback_right(record: dict[str, Any], token: Any) -> None:
    if _is_admin():
        return
    key = record.get("feedback_key")
    if not isinstance(token, str) or not token:
        raise Forbidden(
            'send the feedback_token that came with the prediction as "token" '
            "(or the ADMIN_TOKEN in X-Admin-Token to label as an operator)",
            field="token",
        )
    if not isinstance(key, str) or not hmac.compare_digest(_feedback_key(token).encode(), key.encode()):
        raise Forbidden("this token was not issued with that prediction", field="token")


def _find_prediction(prediction_id: str) -> dict[str, Any]:
    if not UUID_PATTERN.match(prediction_id):
        raise InvalidInput(f"'{prediction_id}' is not a prediction id (a lowercase UUID)", field="id")
    recent = ext("prediction_log").recent(prediction_id)
    if recent is not None:
        return recent
    # Another worker may not have flushed it yet: wait for that only while the id (UUIDv7: its first 48
    # bits are its creation time in ms) is young enough to be in flight, never for an old or unknown one.
    created = int(prediction_id[:8] + prediction_id[9:13], 16) / 1000
    age = time.time() - created
    deadline = time.monotonic() + (_LOOKUP_WAIT_SECONDS - age if -1.0 < age < _LOOKUP_WAIT_SECONDS else 0.0)
    while True:
        try:
            record = ext("db")[PREDICTIONS].find_one({"_id": prediction_id, "kind": "prediction"})
        except PyMongoError as exc:
            raise ApiError(
                f"the prediction log is unavailable right now ({type(exc).__name__}); try again shortly",
                code="storage_unavailable",
                status=503,
            ) from exc
        if record is not None:
            return record
        if time.monotonic() >= deadline:
            raise NotFound(f"no prediction with id {prediction_id}")
        time.sleep(0.1)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in ("_id", "image", "feedback_key")}
    out["id"] = out["uuid"] = record["_id"]
    out["prediction"] = record.get("label")
    out["has_image"] = "image" in record
    if isinstance(out.get("ts"), datetime):
        out["ts"] = out["ts"].isoformat()
    return out


# -- service state -----------------------------------------------------------------------------------


@bp.get("/livez")
@documented("Liveness: the process answers (for a probe that restarts a stuck process)", response="Probe")
def livez() -> Response:
    return jsonify(status="alive")


@bp.get("/readyz")
@documented(
    "Readiness: 200 when a model is loaded, the log writer runs and the outbox is under its cap",
    response="Probe",
    errors=(503,),
)
def readyz() -> tuple[Response, int]:
    reason = _not_ready_reason()
    if reason:
        return jsonify(status="not_ready", reason=reason), 503
    return jsonify(status="ready"), 200


def _not_ready_reason() -> str | None:
    """Why this process should get no traffic now, or None: what /readyz and /health decide on."""
    models, plog = ext("models"), ext("prediction_log")
    if not plog.alive():
        return "the prediction log writer is not running"
    if models.current is None:
        return models.last_error or "no champion model loaded yet"
    if plog.outbox_bytes >= plog.max_outbox_bytes:
        return "the outbox is at its cap (LOG_MAX_OUTBOX_BYTES): predictions would be refused"
    return None


@bp.get("/health")
@documented(
    "The detailed state, for people: model, prediction log, registry; 200 exactly when /readyz is",
    response="Health",
    errors=(503,),
)
def health() -> tuple[Response, int]:
    models, plog = ext("models"), ext("prediction_log")
    model = models.current
    writer = plog.alive()
    reason = _not_ready_reason()
    ready = reason is None
    body = {
        "status": "ready" if ready else "not_ready",
        "model": {
            "loaded": model is not None,
            "name": model.name if model else ext("settings").model_name,
            "version": model.version if model else None,
            "from_cache": bool(model and model.info.get("from_cache")),
            "error": models.last_error,
            # versions the champion alias pointed at whose files the gate never vouched for
            "refused": models.refused,
        },
        "mongodb": {
            "ok": plog.mongo_ok,
            "queue_depth": plog.depth(),
            "outbox_bytes": plog.outbox_bytes,
            "rollups_pending": plog.pending_rollups(),
            "outbox_cap_bytes": plog.max_outbox_bytes,
            "writer_alive": writer,
            "writer_error": plog.writer_error,
            "error": None if plog.mongo_ok else plog.last_error,
        },
        "mlflow": {"ok": models.mlflow_ok, "last_check": models.last_check},
    }
    if reason is not None:
        body["reason"] = reason
    return jsonify(body), 200 if ready else 503


@bp.get("/model-info")
@documented(
    "The model being served: name, version, aliases, run, metrics, dataset hash, signature, engine",
    response="ModelInfo",
    errors=(503,),
)
def model_info() -> Response:
    model = serving_model()
    info = {key: value for key, value in model.info.items() if key not in ("path", "registry")}  # this host's
    if not _has_api_key():  # the page needs name, version, labels and metrics; the registry's details need the key
        info = {key: value for key, value in info.items() if key not in _PRIVATE_INFO}
    return jsonify({**info, "name": model.name, "version": model.version, "labels": model.labels,
                    "loaded_at": model.loaded_at})  # fmt: skip


_PRIVATE_INFO = ("run_id", "tags", "digest", "dataset_hash")


def _has_api_key() -> bool:
    """True when no API key is set, or the request carries it."""
    key = ext("settings").api_key
    if key is None or not key.get_secret_value():
        return True
    given = request.headers.get("X-API-Key") or _bearer()
    if not given:
        return False
    return hmac.compare_digest(given.encode(), key.get_secret_value().encode())


@bp.get("/statistics")
@documented(
    "Prediction statistics over a window (`?window=24h`, also m or d units)", response="Statistics", errors=(422, 503)
)
def statistics() -> Response:
    window = request.args.get("window", "24h")
    match = _WINDOW.match(window)
    if not match:
        raise InvalidInput(f"window must look like 30m, 24h or 7d, got {window!r}", field="window")
    amount, unit = int(match.group(1)), match.group(2)
    delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]
    if delta > timedelta(days=366):
        raise InvalidInput("window may cover at most 366 days", field="window")
    try:
        stats = window_statistics(ext("db"), datetime.now(UTC) - delta)
    except PyMongoError as exc:
        raise ApiError(
            f"statistics are unavailable while MongoDB is unreachable ({type(exc).__name__})",
            code="storage_unavailable",
            status=503,
        ) from exc
    return jsonify({"window": window, **stats})


@bp.get("/monitoring/latest")
@documented("The latest report of the monitor_platform DAG", response="MonitoringReport", errors=(404, 503))
def monitoring_latest() -> Response:
    try:
        report = ext("db")[MONITORING_REPORTS].find_one(sort=[("created_at", -1)])
    except PyMongoError as exc:
        raise ApiError(
            f"MongoDB is unreachable ({type(exc).__name__})", code="storage_unavailable", status=503
        ) from exc
    if report is None:
        raise NotFound("no monitoring report yet: the monitor_platform DAG writes one per run")
    report["id"] = str(report.pop("_id"))
    report["created_at"] = report["created_at"].isoformat()
    return jsonify(report)


@bp.get("/metrics")
@documented("Prometheus metrics of the whole service (every gunicorn worker)", response=None)
def metrics() -> Response:
    m = ext("metrics")
    m.observe_state(ext("prediction_log"), ext("models"))
    return Response(m.render(), mimetype="text/plain; version=0.0.4")


@bp.post("/admin/reload")
@documented("Check the registry now and hot-swap to a new champion", response="Reload", errors=(401,))
@require_admin
def admin_reload() -> Response:
    return jsonify(ext("models").refresh())


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(current_app))


@bp.after_app_request
def _count(response: Response) -> Response:
    if request.endpoint:
        m = ext("metrics")
        route, status = request.endpoint, str(response.status_code)
        m.requests.labels(route, status).inc()
        m.request_seconds.labels(route, status).observe(time.perf_counter() - request_started())
        m.observe_state(ext("prediction_log"), ext("models"))
    return response
