"""Batch scoring inputs and outputs: a table or a zip of images in, one scored row per input out."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from model.data import IMAGE_SUFFIXES
from model.errors import DataValidationError, ImageError
from model.features import decode_image, image_to_features
from model.ids import derived_ids
from model.tabular import Schema, enforce_features, read_table

_BATCH_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

TABLE_FORMATS = ("csv", "parquet")
IMAGE_FORMATS = ("zip",)


@dataclass(frozen=True)
class BatchInput:
    X: Any  # an (n, 64) array or a typed DataFrame
    rows: list[Any]  # what each prediction record stores as its features
    keys: list[str]  # a name per row for the result file: the row number or the image's path in the zip


def read_table_batch(data: bytes, fmt: str, schema: Schema) -> BatchInput:
    """A CSV or Parquet upload checked against the model's schema (unseen categories allowed).

    The file may be the training file itself: the target and other extra columns are ignored, and
    the first id column (tabular.drop) present names each row in the results; else the row number.
    """
    frame = read_table(f"upload.{fmt}", data=data)
    X = enforce_features(frame, schema, strict_categories=False, training=False)
    columns = [X[name].astype(object).where(X[name].notna(), None).tolist() for name in X.columns]
    rows = [dict(zip(X.columns, values, strict=True)) for values in zip(*columns, strict=True)]
    id_column = next((c for c in schema.id_columns if c in frame.columns), None)
    keys = frame[id_column].astype(str).tolist() if id_column else [str(i + 1) for i in range(len(X))]
    return BatchInput(X=X, rows=rows, keys=keys)


def read_image_batch(data: bytes, max_files: int, max_file_bytes: int, max_pixels: int) -> BatchInput:
    """A zip of images, each turned into features by the one preprocessing function."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"the upload is not a zip archive: {exc}") from exc
    entries = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES
        and not PurePosixPath(info.filename).name.startswith(".")
    ]
    if not entries:
        raise DataValidationError(f"the zip holds no images (looked for {sorted(IMAGE_SUFFIXES)})")
    if len(entries) > max_files:
        raise DataValidationError(f"the zip holds {len(entries):,} images; at most {max_files:,} per batch")
    features, keys = [], []
    for info in entries:
        if info.file_size > max_file_bytes:
            raise DataValidationError(
                f"{info.filename}: {info.file_size:,} bytes, images are limited to {max_file_bytes:,}"
            )
        try:
            features.append(image_to_features(decode_image(archive.read(info), max_pixels)))
        except ImageError as exc:
            raise DataValidationError(f"{info.filename}: {exc}") from exc
        keys.append(info.filename)
    X = np.vstack(features)
    return BatchInput(X=X, rows=X.tolist(), keys=keys)


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
    if isinstance(batch.X, pd.DataFrame):
        out = pd.concat([out, batch.X.reset_index(drop=True)], axis=1)
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
