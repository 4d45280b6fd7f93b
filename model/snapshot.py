"""Immutable, content-addressed data snapshots on disk (an adapter: this module does file I/O)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.data import Dataset


@dataclass(frozen=True)
class Snapshot:
    path: Path
    hash: str
    train: Dataset
    holdout: Dataset
    profile: dict[str, Any]
    manifest: dict[str, Any]
    schema: dict[str, Any] | None = None  # tabular snapshots only

    @property
    def task(self) -> str:
        """The task kind's name (model/kinds/)."""
        return str(self.manifest.get("task", "image"))

    @property
    def task_type(self) -> str:
        """classification, or regression for a numeric target (model/regression.py)."""
        return str((self.schema or {}).get("task_type", "classification"))

    @property
    def labels(self) -> list[Any]:
        if "labels" in self.manifest:
            return list(self.manifest["labels"])
        return np.unique(self.train.y).tolist()  # snapshots written before labels were recorded


def write_snapshot(
    root: Path,
    digest: str,
    train: Dataset,
    holdout: Dataset,
    profile: dict[str, Any],
    manifest: dict[str, Any],
    schema: dict[str, Any] | None = None,
) -> Path:
    """Write `root/snapshots/<digest>` once, atomically; an existing snapshot is left as it is."""
    final = root / "snapshots" / digest
    if (final / "manifest.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=final.parent))
    try:
        for name, part in (("train", train), ("holdout", holdout)):
            if hasattr(part.X, "columns"):  # a frame keeps its column types in Parquet; arrays go to npz
                _write_table(tmp / f"{name}.parquet", part)
            else:
                np.savez_compressed(tmp / f"{name}.npz", X=part.X, y=part.y)
        (tmp / "schema.json").write_text(json.dumps(schema, indent=2))  # null for a kind without one
        (tmp / "profile.json").write_text(json.dumps(profile))
        (tmp / "manifest.json").write_text(json.dumps({**manifest, "hash": digest}, indent=2, default=str))
        for child in tmp.iterdir():
            child.chmod(0o444)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "manifest.json").exists():  # not a concurrent writer of the same content
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_snapshot(path: Path) -> Snapshot:
    manifest = json.loads((path / "manifest.json").read_text())
    schema = path / "schema.json"
    return Snapshot(
        path=path,
        hash=manifest["hash"],
        train=_read_part(path, "train"),
        holdout=_read_part(path, "holdout"),
        profile=json.loads((path / "profile.json").read_text()),
        manifest=manifest,
        schema=json.loads(schema.read_text()) if schema.exists() else None,
    )


def _read_part(path: Path, name: str) -> Dataset:
    if (path / f"{name}.parquet").exists():
        return _read_table(path / f"{name}.parquet")
    with np.load(path / f"{name}.npz") as part:
        return Dataset(X=part["X"], y=part["y"])


_TARGET = "__target__"


def _write_table(path: Path, data: Dataset) -> None:
    frame = data.X.assign(**{_TARGET: list(data.y)})
    frame.to_parquet(path, index=False)


def _read_table(path: Path) -> Dataset:
    import pandas as pd

    from model.tabular import with_nan

    frame = with_nan(pd.read_parquet(path))
    y = frame.pop(_TARGET).to_numpy()
    if y.dtype == object and all(isinstance(v, int) for v in y):
        y = y.astype(np.int64)
    return Dataset(X=frame, y=y)
