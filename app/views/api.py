"""JSON API: predictions, the prediction log, feedback, health, model info, statistics, metrics."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from app import reads, recorder
from app.auth import check_feedback_right, has_api_key, require_admin, require_api_key
from app.errors import InvalidInput, NoModel
from app.inputs import decode_base64, from_image_bytes, json_body, parse_predict
from app.openapi import documented, openapi_document
from app.requests_log import request_started
from model.champion import Model
from model.store import FEEDBACK

bp = Blueprint("api", __name__)
MAX_NAME_LENGTH = 255  # a file name, as file systems allow


def ext(name: str) -> Any:
    return current_app.extensions[name]


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
    results, latency_ms, token = recorder.record(model, inputs, "predict", started)
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
    results, _, token = recorder.record(model, inputs, "inference/image", started, name=name)
    return jsonify(uuid=results[0]["id"], feedback_token=token)


# -- the prediction log --------------------------------------------------------------------------------


@bp.get("/predictions/<prediction_id>")
@documented(
    "A stored prediction by id (also the replaced system's `GET /predictions/<uuid>`)",
    response="PredictionRecord",
    errors=(401, 404, 422),
)
@require_api_key
def get_prediction(prediction_id: str) -> Response:
    record = reads.prediction(prediction_id)
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
    record = reads.prediction(prediction_id)
    check_feedback_right(record, body.get("token"))
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
    record = reads.prediction(prediction_id)
    check_feedback_right(record, body.get("token"))
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
    if not has_api_key():  # the page needs name, version, labels and metrics; the registry's details need the key
        info = {key: value for key, value in info.items() if key not in _PRIVATE_INFO}
    return jsonify({**info, "name": model.name, "version": model.version, "labels": model.labels,
                    "loaded_at": model.loaded_at})  # fmt: skip


_PRIVATE_INFO = ("run_id", "tags", "digest", "dataset_hash")


@bp.get("/statistics")
@documented(
    "Prediction statistics over a window (`?window=24h`, also m or d units)", response="Statistics", errors=(422, 503)
)
def statistics() -> Response:
    window = request.args.get("window", "24h")
    return jsonify({"window": window, **reads.statistics(window)})


@bp.get("/monitoring/latest")
@documented("The latest report of the monitor_platform DAG", response="MonitoringReport", errors=(404, 503))
def monitoring_latest() -> Response:
    return jsonify(reads.latest_report())


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
