"""Batch scoring: stable ids per row and the result table (the kind reads the input; blobs.py stores the files)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from model.ids import derived_ids
from model.kinds import BatchInput


def prediction_ids(batch_id: str, created_at: datetime, n: int) -> list[str]:
    """Stable, time-ordered ids per row, so a retried batch run overwrites nothing and duplicates nothing."""
    return derived_ids(batch_id, created_at, n)


def result_table(batch: BatchInput, ids: list[str], outputs: list[dict[str, Any]]) -> pd.DataFrame:
    """The downloadable result: one row per input with its prediction id and answer (label and
    confidence, or value and interval), then the input's columns."""
    if outputs and "value" in outputs[0]:
        intervals = [o["interval"] or [None, None] for o in outputs]
        answer = {
            "value": [o["value"] for o in outputs],
            "interval_low": [i[0] for i in intervals],
            "interval_high": [i[1] for i in intervals],
        }
    else:
        answer = {"label": [o["label"] for o in outputs], "confidence": [o["confidence"] for o in outputs]}
    out = pd.DataFrame({"row": batch.keys, "prediction_id": ids, **answer})
    if batch.columns is not None:
        out = pd.concat([out, batch.columns.reset_index(drop=True)], axis=1)
    return out
