from datetime import UTC, datetime

from model.statistics import LATENCY_EDGES_MS, percentile, rollup_increments, summarize


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
                field, bucket = path.split(".")
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
    ]
    stats = summarize(apply(rollup_increments(records)), {"count": 4, "correct": 3})
    assert stats["total"] == 3
    assert stats["errors"] == 1
    assert stats["error_rate"] == 0.25
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
