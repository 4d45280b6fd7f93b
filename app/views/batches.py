"""Asynchronous batch scoring: upload a file, get an id at once; Airflow's score_batch DAG does the work."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context
from pymongo.errors import PyMongoError

from app.auth import require_api_key
from app.errors import ApiError, InvalidInput, NotFound, PayloadTooLarge, UnsupportedMedia
from app.openapi import documented
from app.reads import UUID_PATTERN
from app.requests_log import request_id
from app.views.api import ext, serving_model
from model import blobs
from model.store import BATCHES, update_batch

bp = Blueprint("batches", __name__)
log = logging.getLogger(__name__)
DAG_ID = "score_batch"
_STALE = timedelta(seconds=60)  # a pending/running batch not updated for this long is checked in Airflow
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".zip": "zip"}


def trigger_with_airflow(settings: Any) -> Any:
    """The default way to start a batch run: Airflow's REST API (tests pass their own callable)."""

    def trigger(conf: dict[str, Any], run_id: str) -> str:
        from ops.airflow_api import AirflowApi

        return AirflowApi(settings).trigger(DAG_ID, conf, run_id=run_id)

    return trigger


@bp.post("/batches")
@documented(
    "Score a file asynchronously: CSV/Parquet rows for a tabular model, a zip of images for an image model",
    request="BatchUpload",
    response="Batch",
    errors=(401, 413, 415, 422, 503, 507),
)
@require_api_key
def create_batch() -> tuple[Response, int]:
    model = serving_model()
    settings = ext("settings")
    request.max_content_length = settings.max_batch_file_bytes + 64 * 1024
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMedia("upload the file as multipart/form-data in a field named 'file'", field="Content-Type")
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("upload the file in a multipart field named 'file'", field="file")
    fmt = _SUFFIXES.get(PurePosixPath(upload.filename or "").suffix.lower())
    if fmt not in model.kind.batch_formats:
        raise UnsupportedMedia(
            f"the served model is a {model.kind.name} model and scores {model.kind.batch_files}; "
            f"got '{upload.filename}'",
            field="file",
        )
    data = upload.read(settings.max_batch_file_bytes + 1)
    if len(data) > settings.max_batch_file_bytes:
        raise PayloadTooLarge(f"batch files are limited to {settings.max_batch_file_bytes:,} bytes", field="file")
    if not data:
        raise InvalidInput("the uploaded file is empty", field="file")
    db = ext("db")
    batch_id = str(uuid.uuid4())
    try:
        _make_room(db, len(data), settings.max_batches_bytes, settings.batch_retention_days)
        blobs.store_batch_input(db, batch_id, fmt, data)
    except PyMongoError as exc:
        raise _storage_unavailable(exc) from exc
    now = datetime.now(UTC)
    run_id = f"batch__{batch_id}"
    doc = {
        "_id": batch_id,
        "status": "pending",
        "created_at": now,
        "updated_at": now,
        "filename": upload.filename,
        "format": fmt,
        "bytes": len(data),
        "model_name": model.name,
        "submitted_model_version": model.version,
        "airflow_dag_id": DAG_ID,
        "airflow_run_id": run_id,
        "request_id": request_id(),
        "triggered_at": None,
        "trigger_attempts": 0,
        "next_attempt_at": now,
    }
    try:
        db[BATCHES].insert_one(doc)
    except PyMongoError as exc:
        try:
            blobs.delete_batch_files(db, batch_id)
        except PyMongoError:
            log.warning("batch %s: its upload stays in GridFS until it expires", batch_id)
        raise _storage_unavailable(exc) from exc
    error = ext("batch_dispatcher").dispatch(doc)
    body: dict[str, Any] = {"id": batch_id, "status": "pending", "links": _links(batch_id)}
    if error is not None:
        body["message"] = (
            f"Airflow did not accept the run yet ({error}); the service keeps trying and the batch "
            f"fails if it cannot start within {settings.batch_trigger_give_up_seconds:.0f} s"
        )
    return jsonify(body), 202


@bp.get("/batches/<batch_id>")
@documented("A batch's status: pending | running | succeeded | failed, counts, model version", response="Batch",
            errors=(401, 404, 422, 503))  # fmt: skip
@require_api_key
def get_batch(batch_id: str) -> Response:
    doc = _find(batch_id)
    stale = datetime.now(UTC) - doc["updated_at"] > _STALE
    if doc["status"] in ("pending", "running") and doc.get("triggered_at") is not None and stale:
        doc = _reconcile(doc)
    return jsonify(_public(doc))


@bp.get("/batches/<batch_id>/result")
@documented("Download the scored file (CSV) of a succeeded batch", response=None, errors=(401, 404, 409, 422, 503))
@require_api_key
def get_batch_result(batch_id: str) -> Response:
    doc = _find(batch_id)
    if doc["status"] != "succeeded":
        reason = f": {doc['error']}" if doc.get("error") else ""
        raise ApiError(f"batch {batch_id} is {doc['status']}{reason}; its result exists once it has succeeded",
                       code="not_ready", status=409)  # fmt: skip
    try:
        result = blobs.open_batch_result(ext("db"), doc["_id"])  # named from the id, never from the document
    except PyMongoError as exc:
        raise _storage_unavailable(exc) from exc
    if result is None:
        raise NotFound(f"the result of batch {batch_id} is no longer stored (BATCH_RETENTION_DAYS)")
    response = Response(
        stream_with_context(blobs.stream(result, f"the result of batch {batch_id}")), mimetype="text/csv"
    )
    response.headers["Content-Length"] = str(result.length)
    response.headers["Content-Disposition"] = f'attachment; filename="{batch_id}.csv"'
    return response


def _storage_unavailable(exc: PyMongoError) -> ApiError:
    return ApiError(
        f"batches cannot be accepted or served while MongoDB is unreachable ({type(exc).__name__}); try again shortly",
        code="storage_unavailable",
        status=503,
    )


def _find(batch_id: str) -> dict[str, Any]:
    if not UUID_PATTERN.match(batch_id):
        raise InvalidInput(f"'{batch_id}' is not a batch id (a lowercase UUID)", field="id")
    try:
        doc = ext("db")[BATCHES].find_one({"_id": batch_id})
    except PyMongoError as exc:
        raise ApiError(f"MongoDB is unreachable ({type(exc).__name__}); try again shortly",
                       code="storage_unavailable", status=503) from exc  # fmt: skip
    if doc is None:
        raise NotFound(f"no batch with id {batch_id}")
    return doc  # type: ignore[no-any-return]


def _reconcile(doc: dict[str, Any]) -> dict[str, Any]:
    """A run that died without reporting (worker killed, callback lost) is read from Airflow."""
    from ops.airflow_api import AirflowApi, AirflowApiError

    try:
        state = AirflowApi(ext("settings")).run_state(doc["airflow_dag_id"], doc["airflow_run_id"])
    except (AirflowApiError, OSError) as exc:
        log.info("could not ask Airflow about batch %s: %s", doc["_id"], exc)
        return doc
    if state == "failed" or state is None:
        reason = f"the Airflow run {doc['airflow_run_id']} " + (
            "failed: see its task log" if state else "does not exist"
        )
        update_batch(ext("db"), doc["_id"], status="failed", error=reason)
        return {**doc, "status": "failed", "error": reason}
    return doc


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    hidden = ("_id", "input_path", "result_path", "next_attempt_at")  # the paths: batches stored before GridFS
    out = {k: v for k, v in doc.items() if k not in hidden}
    out["id"] = doc["_id"]
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    out["links"] = _links(doc["_id"])
    return out


def _links(batch_id: str) -> dict[str, str]:
    return {"self": f"/batches/{batch_id}", "result": f"/batches/{batch_id}/result"}


def _make_room(db: Any, incoming: int, quota: int, retention_days: float) -> None:
    """Delete batch files past their retention, then refuse the upload if the quota would be exceeded."""
    blobs.expire_batch_files(db, retention_days)
    used = blobs.batch_bytes(db)
    if used + incoming > quota:
        raise ApiError(
            f"batch storage holds {used:,} bytes and its quota is {quota:,} (MAX_BATCHES_BYTES); "
            "try again once older batches expire (BATCH_RETENTION_DAYS)",
            code="batch_storage_full",
            status=507,
        )
