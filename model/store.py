"""MongoDB adapter for the lifecycle: model events and feedback (the app owns the prediction log)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymongo.database import Database

from model.data import Dataset
from model.features import N_FEATURES

PREDICTIONS, FEEDBACK, MODEL_EVENTS, MONITORING_REPORTS, BATCHES = (
    "predictions",
    "feedback",
    "model_events",
    "monitoring_reports",
    "batches",
)
_DUPLICATE_KEY = 11000


def record_event(db: Database, kind: str, **fields: Any) -> dict[str, Any]:
    """Insert one model event (promotion, rejection, rollback) and return it."""
    event = {"_id": str(uuid.uuid4()), "kind": kind, "created_at": datetime.now(UTC), **fields}
    db[MODEL_EVENTS].insert_one(event)
    return event


def pinned_schema(db: Database, key: str) -> dict[str, Any] | None:
    """The table schema pinned for `key` (a source and its target), if one was: every host reads the same."""
    doc = db[MODEL_EVENTS].find_one({"_id": f"schema-pin:{key}"})
    return None if doc is None else dict(doc["schema"])


def pin_schema(db: Database, key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Pin `schema` for `key` unless one already is (concurrent ingests: the first wins); the pinned one."""
    from pymongo.errors import DuplicateKeyError

    try:
        db[MODEL_EVENTS].insert_one(
            {"_id": f"schema-pin:{key}", "kind": "schema_pinned", "created_at": datetime.now(UTC), "schema": schema}
        )
    except DuplicateKeyError:
        pass
    return pinned_schema(db, key) or schema


def load_feedback(db: Database, labels: list[int], n_features: int = N_FEATURES) -> Dataset:
    """Feedback labels joined to the features of the predictions they correct."""
    feedback = list(db[FEEDBACK].find({}, {"prediction_id": 1, "label": 1, "features": 1}))
    missing = [f["prediction_id"] for f in feedback if not f.get("features")]
    features_by_id: dict[str, list[float]] = {}
    if missing:
        for doc in db[PREDICTIONS].find({"_id": {"$in": missing}}, {"features": 1}):
            features_by_id[doc["_id"]] = doc.get("features")
    rows, targets, origins = [], [], []
    for item in feedback:
        features = item.get("features") or features_by_id.get(item["prediction_id"])
        if features is None or len(features) != n_features or item.get("label") not in labels:
            continue
        rows.append(features)
        targets.append(int(item["label"]))
        origins.append(f"feedback {item['_id']}")
    if not rows:
        return Dataset(X=np.empty((0, n_features)), y=np.empty((0,), dtype=np.int64), origins=[])
    return Dataset(X=np.asarray(rows, dtype=np.float64), y=np.asarray(targets, dtype=np.int64), origins=origins)


ROLLUPS = "prediction_rollups"


def insert_predictions(
    db: Database,
    docs: Sequence[Mapping[str, Any]],
    increments: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Insert prediction documents (dicts or RawBSONDocuments), skipping ids already stored; roll up the new.

    `increments`, when the caller has them, are the rollups of all of `docs`; they are used only if
    every document was new, otherwise the new documents' own are. Returns how many were new and the
    increments to apply: the caller applies them with `apply_rollups(db, increments, writer, seq)`,
    and keeps them to retry if that fails (the documents are in; only their counts are not).
    """
    from pymongo.errors import BulkWriteError

    from model.statistics import rollup_increments

    new = docs
    try:
        db[PREDICTIONS].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != _DUPLICATE_KEY for e in errors):
            raise
        duplicate = {e["index"] for e in errors}
        new = [doc for i, doc in enumerate(docs) if i not in duplicate]
        increments = None
    if increments is None:
        increments = rollup_increments(new)
    return len(new), increments


def apply_rollups(db: Database, increments: dict[str, dict[str, Any]], writer: str, seq: int) -> None:
    """Add increments to the hourly rollups exactly once per (writer, seq), however often it is retried.

    Each writer (a process's log writer, a batch) has its own rollup document per hour, model and
    version, which remembers the last `seq` it applied; a writer applies its seqs in increasing order.
    An update whose seq is not above the document's is a retry of one already applied: the filter does
    not match, the upsert collides with the existing `_id`, and that duplicate-key error is ignored.
    Readers sum every writer's documents for an hour.
    """
    from pymongo import UpdateOne
    from pymongo.errors import BulkWriteError

    if not increments:
        return
    updates = [
        UpdateOne(
            {"_id": f"{key}|{writer}", "seq": {"$lt": seq}},
            {"$inc": update["$inc"], "$set": {"seq": seq}, "$setOnInsert": update["$setOnInsert"]},
            upsert=True,
        )
        for key, update in increments.items()
    ]
    try:
        db[ROLLUPS].bulk_write(updates, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


def update_batch(db: Database, batch_id: str, **fields: Any) -> None:
    """Set fields of a batch job document (status, counts, reason), stamping updated_at."""
    db[BATCHES].update_one({"_id": batch_id}, {"$set": {**fields, "updated_at": datetime.now(UTC)}})


def window_statistics(db: Database, since: datetime, low_confidence: float = 0.5) -> dict[str, Any]:
    """Statistics since `since` (floored to the hour) from the rollups and the feedback collection."""
    from model.statistics import summarize

    hour = since.replace(minute=0, second=0, microsecond=0)
    rollups = db[ROLLUPS].find({"hour": {"$gte": hour}})
    labelled = db[FEEDBACK].count_documents({"created_at": {"$gte": hour}})
    correct = db[FEEDBACK].count_documents({"created_at": {"$gte": hour}, "correct": True})
    stats = summarize(rollups, {"count": labelled, "correct": correct}, low_confidence)
    errors = [  # a regressor's feedback carries the error made (true value - predicted value)
        doc["error"]
        for doc in db[FEEDBACK].find({"created_at": {"$gte": hour}, "error": {"$type": "number"}}, {"error": 1})
    ]
    if errors:
        stats["feedback"]["accuracy"] = None
        stats["feedback"]["mae"] = round(float(np.mean(np.abs(errors))), 6)
        stats["feedback"]["rmse"] = round(float(np.sqrt(np.mean(np.square(errors)))), 6)
    stats["since"] = hour.isoformat()
    return stats


def ensure_indexes(db: Database, ttl_days: int | None = None) -> None:
    """Indexes for the platform's queries; idempotent.

    The prediction log has no secondary index unless retention is on (TTL needs one on `ts`): its
    ids are time-ordered, so time windows use the `_id` index, and statistics read the rollups. Every
    secondary index costs each insert more than the document itself (bench/ measured 46 us/doc
    without one and 150-200 us/doc with any on the MongoDB-wire server).
    """
    predictions = db[PREDICTIONS]
    existing = set(predictions.index_information())
    obsolete = {"ts", "version_ts", "request_id", "batch_id"} | (set() if ttl_days else {"ts_ttl"})
    for name in existing & obsolete:
        predictions.drop_index(name)
    if ttl_days:
        predictions.create_index("ts", expireAfterSeconds=int(ttl_days * 86400), name="ts_ttl")
    db[ROLLUPS].create_index("hour", name="hour")
    db[FEEDBACK].create_index("created_at", name="created_at")
    db[MODEL_EVENTS].create_index("created_at", name="created_at")
    db[MONITORING_REPORTS].create_index("created_at", name="created_at")
    db[BATCHES].create_index("created_at", name="created_at")
