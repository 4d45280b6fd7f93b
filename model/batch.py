"""Batch scoring: stable ids per row, the result file, and where a batch's files live (the kind reads the input)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from model.ids import derived_ids
from model.kinds import BatchInput

_BATCH_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


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


def batch_file(root: Path, batch_id: str, name: str) -> Path:
    """`root/<batch id>/<name>`, built from the id and refused unless it stays inside `root`.

    Paths are never taken from MongoDB documents: whoever can write a document must not choose a file.
    """
    if not _BATCH_ID.match(batch_id) or "/" in name or name.startswith("."):
        raise ValueError(f"not a batch file: {batch_id}/{name}")
    path = (root / batch_id / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"not a batch file: {batch_id}/{name}")
    return path
