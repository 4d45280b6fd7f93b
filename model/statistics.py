"""Prediction statistics from incremental rollups, shared by the app's /statistics and the monitor DAG.

Every logged prediction increments one rollup document per (hour, model version): a count per label,
sums, and fixed-bucket histograms of confidence and latency. A window's statistics then read at most
hours x versions small documents, however many predictions were logged. One document per version
rather than per label keeps a writer's flush to one upsert per hour and version: the MongoDB-wire
server commits each upsert on its own, and they were a tenth of its work per logged prediction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

CONFIDENCE_BUCKETS = 20  # 0.05 wide
LATENCY_EDGES_MS = [0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000]


def value_bins(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Each value's bin among the training target's quantile edges (the outer bins are open)."""
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    return np.searchsorted(inner, values, side="right")


def latency_bucket(ms: float) -> int:
    for i, edge in enumerate(LATENCY_EDGES_MS):
        if ms <= edge:
            return i
    return len(LATENCY_EDGES_MS)


def confidence_bucket(confidence: float) -> int:
    return min(int(confidence * CONFIDENCE_BUCKETS), CONFIDENCE_BUCKETS - 1)


def rollup_key(ts: datetime, model_name: Any, version: Any) -> str:
    return f"{ts.strftime('%Y-%m-%dT%H')}|{model_name}|{version}"


def label_field(label: Any) -> str:
    """A label as a field name under `labels` (dots and dollars would be read as paths and operators)."""
    return str(label).replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def field_label(name: str) -> str:
    return name.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def rollup_increments(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """MongoDB update documents ($inc / $setOnInsert) per rollup key for these records."""
    grouped: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    meta: dict[str, dict[str, Any]] = {}
    for record in records:
        ts: datetime = record["ts"]
        key = rollup_key(ts, record.get("model_name"), record.get("model_version"))
        inc = grouped[key]
        if key not in meta:
            meta[key] = _rollup_meta(ts, record.get("model_name"), record.get("model_version"))
        if record.get("kind") == "error":
            # a refused request (bad input, no credentials) is the client's: counted apart from failures
            status = record.get("status")
            inc["rejected" if status is not None and status < 500 else "errors"] += 1
            continue
        inc["count"] += 1
        if "value" in record:  # a regressor's answer: sums for the mean and spread of predicted values
            inc["value_count"] += 1
            inc["value_sum"] += record["value"]
            inc["value_sq_sum"] += record["value"] ** 2
            if record.get("value_bin") is not None:  # over the served version's value_bins (the target's)
                inc[f"value_hist.{record['value_bin']}"] += 1
        else:
            inc[f"labels.{label_field(record['label'])}"] += 1
            inc["confidence_sum"] += record["confidence"]
            inc[f"confidence_hist.{confidence_bucket(record['confidence'])}"] += 1
        if record.get("latency_ms") is not None:  # batch rows have no request latency of their own
            inc["latency_sum_ms"] += record["latency_ms"]
            inc[f"latency_hist.{latency_bucket(record['latency_ms'])}"] += 1
    return {key: {"$inc": dict(inc), "$setOnInsert": meta[key]} for key, inc in grouped.items()}


def request_increments(
    ts: datetime,
    model_name: str,
    version: str,
    classes: list[Any],
    predicted: np.ndarray,
    confidences: np.ndarray,
    latency_ms: float,
) -> dict[str, dict[str, Any]]:
    """rollup_increments of one request's predictions (one time, model and latency), with numpy.

    `predicted` holds each row's class index into `classes`, `confidences` its probability.
    """
    n = len(predicted)
    per_class = np.bincount(predicted, minlength=len(classes)).tolist()
    buckets = np.bincount(
        np.minimum((confidences * CONFIDENCE_BUCKETS).astype(np.int64), CONFIDENCE_BUCKETS - 1),
        minlength=CONFIDENCE_BUCKETS,
    )
    inc: dict[str, float] = {"count": n}
    inc.update({f"labels.{label_field(label)}": c for label, c in zip(classes, per_class, strict=True) if c})
    inc["confidence_sum"] = float(confidences.sum())
    inc.update({f"confidence_hist.{b}": int(c) for b, c in enumerate(buckets.tolist()) if c})
    inc["latency_sum_ms"] = latency_ms * n
    inc[f"latency_hist.{latency_bucket(latency_ms)}"] = n
    key = rollup_key(ts, model_name, version)
    return {key: {"$inc": inc, "$setOnInsert": _rollup_meta(ts, model_name, version)}}


def merge_increments(parts: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Several increments as one: the same keys' $inc values summed (one upsert per key)."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for key, update in part.items():
            if key not in merged:
                merged[key] = {"$inc": dict(update["$inc"]), "$setOnInsert": update["$setOnInsert"]}
                continue
            inc = merged[key]["$inc"]
            for path, value in update["$inc"].items():
                inc[path] = inc.get(path, 0) + value
    return merged


def _rollup_meta(ts: datetime, model_name: Any, version: Any) -> dict[str, Any]:
    return {"hour": ts.replace(minute=0, second=0, microsecond=0), "model_name": model_name, "model_version": version}


def percentile(histogram: list[float], q: float) -> float | None:
    """The q-quantile (0-1) of a latency histogram, interpolated inside its bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    target = q * total
    cumulative = 0.0
    for i, count in enumerate(histogram):
        if count and cumulative + count >= target:
            low = LATENCY_EDGES_MS[i - 1] if i > 0 else 0.0
            high = LATENCY_EDGES_MS[i] if i < len(LATENCY_EDGES_MS) else LATENCY_EDGES_MS[-1] * 2
            return round(low + (high - low) * (target - cumulative) / count, 3)
        cumulative += count
    return LATENCY_EDGES_MS[-1]


def summarize(
    rollups: Iterable[dict[str, Any]], feedback: dict[str, int] | None = None, low_confidence: float = 0.5
) -> dict[str, Any]:
    """Totals, per label / version / hour, mean confidence, latency percentiles, errors, feedback accuracy."""
    total = errors = rejected = 0
    confidence_sum = latency_sum = 0.0
    per_label: dict[str, int] = defaultdict(int)
    per_version: dict[str, int] = defaultdict(int)
    per_hour: dict[str, int] = defaultdict(int)
    version_confidence: dict[str, float] = defaultdict(float)
    hour_latency: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # latency sum, timed count
    latency_hist = [0.0] * (len(LATENCY_EDGES_MS) + 1)
    confidence_hist = [0.0] * CONFIDENCE_BUCKETS
    values = [0.0, 0.0, 0.0]  # count, sum, sum of squares of predicted values (regression)
    value_hist: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # per version
    for doc in rollups:
        errors += int(doc.get("errors", 0))
        rejected += int(doc.get("rejected", 0))
        count = int(doc.get("count", 0))
        if not count:
            continue
        total += count
        confidence_sum += doc.get("confidence_sum", 0.0)
        latency_sum += doc.get("latency_sum_ms", 0.0)
        if "labels" in doc:
            for name, n in doc["labels"].items():
                per_label[field_label(name)] += int(n)
        elif "label" in doc:  # written before rollups were per version: one document per label
            per_label[str(doc["label"])] += count
        for i, field in enumerate(("value_count", "value_sum", "value_sq_sum")):
            values[i] += doc.get(field, 0.0)
        for bucket, n in (doc.get("value_hist") or {}).items():
            value_hist[str(doc["model_version"])][int(bucket)] += int(n)
        per_version[str(doc["model_version"])] += count
        version_confidence[str(doc["model_version"])] += doc.get("confidence_sum", 0.0)
        hour = doc["hour"]
        hour_key = hour.strftime("%Y-%m-%dT%H:00Z") if isinstance(hour, datetime) else str(hour)
        per_hour[hour_key] += count
        hour_latency[hour_key][0] += doc.get("latency_sum_ms", 0.0)
        hour_latency[hour_key][1] += sum((doc.get("latency_hist") or {}).values())
        for bucket, n in (doc.get("latency_hist") or {}).items():
            latency_hist[int(bucket)] += n
        for bucket, n in (doc.get("confidence_hist") or {}).items():
            confidence_hist[int(bucket)] += n
    requests = total + errors
    feedback = feedback or {}
    labelled, correct = feedback.get("count", 0), feedback.get("correct", 0)
    return {
        "total": total,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
        "rejected": rejected,  # 4xx answers (bad input, unauthenticated): not in the error rate
        "per_label": dict(sorted(per_label.items())),
        "per_version": dict(sorted(per_version.items())),
        "per_hour": dict(sorted(per_hour.items())),
        # mean confidence per model version (champion against previous), mean latency per hour
        "per_version_confidence": {v: round(version_confidence[v] / n, 6) for v, n in sorted(per_version.items())},
        "per_hour_latency_ms": {h: round(s / n, 3) for h, (s, n) in sorted(hour_latency.items()) if n},
        "mean_confidence": round(confidence_sum / total, 6) if total else None,
        "low_confidence_share": low_confidence_share([int(v) for v in confidence_hist], low_confidence),
        "confidence_histogram": [int(v) for v in confidence_hist],
        "latency_ms": {
            "mean": round(latency_sum / timed, 3) if (timed := sum(latency_hist)) else None,
            "p50": percentile(latency_hist, 0.50),
            "p95": percentile(latency_hist, 0.95),
            "p99": percentile(latency_hist, 0.99),
        },
        # regression: the mean and standard deviation of the predicted values
        "values": _moments(*values),
        # per model version: predicted values per bin of that version's value_bins (GET /model-info)
        "per_version_value_histogram": {
            v: [h.get(i, 0) for i in range(max(h) + 1)] for v, h in sorted(value_hist.items()) if h
        },
        "feedback": {
            "count": labelled,
            "correct": correct,
            "accuracy": round(correct / labelled, 6) if labelled else None,
        },
    }


def _moments(count: float, total: float, squares: float) -> dict[str, Any] | None:
    if not count:
        return None
    mean = total / count
    return {"count": int(count), "mean": round(mean, 6), "std": round(max(0.0, squares / count - mean**2) ** 0.5, 6)}


def low_confidence_share(confidence_histogram: list[int], threshold: float) -> float | None:
    total = sum(confidence_histogram)
    if not total:
        return None
    below = sum(n for i, n in enumerate(confidence_histogram) if (i + 1) / CONFIDENCE_BUCKETS <= threshold)
    return round(below / total, 6)
