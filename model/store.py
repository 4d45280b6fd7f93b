"""MongoDB adapter for the lifecycle: model events and feedback (the app owns the prediction log)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymongo.database import Database

from model.data import Dataset
from model.features import N_FEATURES

PREDICTIONS, FEEDBACK, MODEL_EVENTS, MONITORING_REPORTS = (
    "predictions",
    "feedback",
    "model_events",
    "monitoring_reports",
)


def record_event(db: Database, kind: str, **fields: Any) -> dict[str, Any]:
    """Insert one model event (promotion, rejection, rollback) and return it."""
    event = {"_id": str(uuid.uuid4()), "kind": kind, "created_at": datetime.now(UTC), **fields}
    db[MODEL_EVENTS].insert_one(event)
    return event


def load_feedback(db: Database, labels: list[int]) -> Dataset:
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
        if features is None or len(features) != N_FEATURES or item.get("label") not in labels:
            continue
        rows.append(features)
        targets.append(int(item["label"]))
        origins.append(f"feedback {item['_id']}")
    if not rows:
        return Dataset(X=np.empty((0, N_FEATURES)), y=np.empty((0,), dtype=np.int64), origins=[])
    return Dataset(X=np.asarray(rows, dtype=np.float64), y=np.asarray(targets, dtype=np.int64), origins=origins)


ROLLUPS = "prediction_rollups"


def window_statistics(db: Database, since: datetime, low_confidence: float = 0.5) -> dict[str, Any]:
    """Statistics since `since` (floored to the hour) from the rollups and the feedback collection."""
    from model.statistics import summarize

    hour = since.replace(minute=0, second=0, microsecond=0)
    rollups = db[ROLLUPS].find({"hour": {"$gte": hour}})
    labelled = db[FEEDBACK].count_documents({"created_at": {"$gte": hour}})
    correct = db[FEEDBACK].count_documents({"created_at": {"$gte": hour}, "correct": True})
    stats = summarize(rollups, {"count": labelled, "correct": correct}, low_confidence)
    stats["since"] = hour.isoformat()
    return stats


def ensure_indexes(db: Database, ttl_days: int | None = None) -> None:
    """Indexes for the prediction log queries; idempotent."""
    predictions = db[PREDICTIONS]
    if ttl_days:
        predictions.create_index("ts", expireAfterSeconds=int(ttl_days * 86400), name="ts_ttl")
    else:
        predictions.create_index("ts", name="ts")
    predictions.create_index([("model_version", 1), ("ts", -1)], name="version_ts")
    predictions.create_index("request_id", name="request_id", sparse=True)
    db[ROLLUPS].create_index("hour", name="hour")
    db[FEEDBACK].create_index("created_at", name="created_at")
    db[MODEL_EVENTS].create_index("created_at", name="created_at")
    db[MONITORING_REPORTS].create_index("created_at", name="created_at")
