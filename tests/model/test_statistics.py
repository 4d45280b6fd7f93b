from datetime import UTC, datetime

import numpy as np
import pytest

from model.statistics import (
    LATENCY_EDGES_MS,
    merge_increments,
    percentile,
    request_increments,
    rollup_increments,
    summarize,
)


def record(label, confidence, latency, minute=0, version="1", kind="prediction"):
    return {
        "ts": datetime(2026, 1, 1, 10, minute, tzinfo=UTC),
        "label": label,
        "confidence": confidence,
        "latency_ms": latency,
        "model_name": "m",
        "model_version": version,
        "kind": kind,
    }


def apply(increments):
    """Apply $inc/$setOnInsert documents the way MongoDB would, to test the summary on them."""
    docs = {}
    for key, update in increments.items():
        doc = docs.setdefault(key, dict(update["$setOnInsert"]))
        for path, value in update["$inc"].items():
            if "." in path:
                field, bucket = path.split(".", 1)
                doc.setdefault(field, {}).setdefault(bucket, 0)
                doc[field][bucket] += value
            else:
                doc[path] = doc.get(path, 0) + value
    return list(docs.values())


def test_summary_counts_what_was_recorded():
    records = [
        record(1, 0.9, 1.0),
        record(1, 0.7, 2.0),
        record(2, 0.4, 30.0, version="2"),
        {**record(None, 0, 0), "kind": "error"},
        {**record(None, 0, 0), "kind": "error", "status": 401},
        {**record(None, 0, 0), "kind": "error", "status": 422},
    ]
    stats = summarize(apply(rollup_increments(records)), {"count": 4, "correct": 3})
    assert stats["total"] == 3
    assert stats["errors"] == 1
    assert stats["error_rate"] == 0.25, "refused requests are not failures: they do not count in the rate"
    assert stats["rejected"] == 2
    assert stats["per_label"] == {"1": 2, "2": 1}
    assert stats["per_version"] == {"1": 2, "2": 1}
    assert abs(stats["mean_confidence"] - (0.9 + 0.7 + 0.4) / 3) < 1e-6
    assert stats["low_confidence_share"] == round(1 / 3, 6)
    assert stats["feedback"]["accuracy"] == 0.75
    assert stats["latency_ms"]["p99"] <= 30.0


def test_percentile_interpolates_within_a_bucket():
    hist = [0] * (len(LATENCY_EDGES_MS) + 1)
    hist[2] = 100  # all between 0.5 and 1 ms
    assert percentile(hist, 0.5) == 0.75
    assert percentile([0] * 5, 0.5) is None


def test_a_request_rolls_up_as_its_records_would():
    rng = np.random.default_rng(3)
    classes = ["a.b", "$c", "d"]
    predicted = rng.integers(0, 3, 500)
    confidence = rng.uniform(0.1, 1.0, 500)
    ts = datetime(2026, 1, 1, 10, 7, tzinfo=UTC)
    records = [
        {"ts": ts, "label": classes[p], "confidence": c, "latency_ms": 4.2, "model_name": "m", "model_version": "3"}
        for p, c in zip(predicted.tolist(), confidence.tolist(), strict=True)
    ]
    one_by_one = rollup_increments(records)
    vectorized = request_increments(ts, "m", "3", classes, predicted, confidence, 4.2)
    assert vectorized.keys() == one_by_one.keys()
    for key, update in one_by_one.items():
        assert vectorized[key]["$setOnInsert"] == update["$setOnInsert"]
        assert vectorized[key]["$inc"] == pytest.approx(update["$inc"])
    stats = summarize(apply(merge_increments([vectorized, vectorized])))
    assert stats["per_label"] == {c: 2 * int((predicted == i).sum()) for i, c in enumerate(classes)}
    assert stats["total"] == 1000


def test_rollups_written_before_the_per_version_layout_still_count():
    old = {"hour": datetime(2026, 1, 1, 9, tzinfo=UTC), "model_name": "m", "model_version": "1", "label": 7,
           "count": 5, "confidence_sum": 4.0, "confidence_hist": {"19": 5}}  # fmt: skip
    new = apply(rollup_increments([record(7, 0.9, 1.0), record(8, 0.9, 1.0)]))
    stats = summarize([old, *new])
    assert stats["per_label"] == {"7": 6, "8": 1}
    assert stats["total"] == 7
