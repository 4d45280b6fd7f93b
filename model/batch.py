"""Batch scoring: stable ids per row and the result table (the kind reads the input; blobs.py stores the files)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from model.ids import derived_ids


def prediction_ids(batch_id: str, created_at: datetime, n: int, start: int = 0) -> list[str]:
    """Stable, time-ordered ids of rows start..start+n-1, so a retried batch run overwrites nothing and
    duplicates nothing."""
    return derived_ids(batch_id, created_at, n, start)


def result_table(
    keys: list[str], ids: list[str], outputs: list[dict[str, Any]], columns: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Rows of the downloadable result: each input's key and prediction id, its answer (label and
    confidence, or value and interval), then the input's columns (a table's) if given."""
    if outputs and "value" in outputs[0]:
        intervals = [o["interval"] or [None, None] for o in outputs]
        answer = {
            "value": [o["value"] for o in outputs],
            "interval_low": [i[0] for i in intervals],
            "interval_high": [i[1] for i in intervals],
        }
    else:
        answer = {"label": [o["label"] for o in outputs], "confidence": [o["confidence"] for o in outputs]}
    out = pd.DataFrame({"row": keys, "prediction_id": ids, **answer})
    if columns is not None:
        out = pd.concat([out, columns.reset_index(drop=True)], axis=1)
    return out
