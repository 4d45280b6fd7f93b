"""Records encoded all at once are byte-for-byte what bson.encode gives record by record."""

from __future__ import annotations

from datetime import UTC, datetime

import bson
import numpy as np

from app.prediction_log import wrap
from app.records import encode_rows
from model.ids import time_ordered_ids


def test_encoded_rows_equal_bson_encode_per_record():
    n, rng = 200, np.random.default_rng(0)
    X, proba = rng.integers(0, 17, (n, 64)).astype(float), rng.random((n, 10)).round(6)
    ids, labels = time_ordered_ids(n), rng.integers(0, 10, n).tolist()
    common = {"kind": "prediction", "ts": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), "model_name": "m",
              "model_version": "12", "source": "predict", "request_id": None}  # fmt: skip
    columns = {"_id": ids, "input_hash": [f"{i:032x}" for i in range(n)], "features": X, "label": labels,
               "confidence": proba.max(axis=1), "probabilities": proba, "latency_ms": np.full(n, 2.5)}  # fmt: skip
    entries, raws = encode_rows("predictions", common, columns, n)
    expected = [
        bson.encode({**common, "_id": ids[i], "input_hash": f"{i:032x}", "features": X[i].tolist(), "label": labels[i],
                     "confidence": float(proba[i].max()), "probabilities": proba[i].tolist(), "latency_ms": 2.5})
        for i in range(n)
    ]  # fmt: skip
    assert raws == expected
    assert entries == b"".join(wrap("predictions", raw) for raw in expected)


def test_rows_that_cannot_share_a_layout_are_left_to_the_caller():
    common = {"kind": "prediction"}
    assert encode_rows("p", common, {"_id": ["a", "bb"], "label": [1, 2]}, 2) is None, "ids of different lengths"
    assert encode_rows("p", common, {"_id": ["a", "b"], "label": ["x", "y"]}, 2) is not None
    assert encode_rows("p", common, {"_id": ["a", "b"], "label": [1, 2**40]}, 2) is None, "int64 labels"
