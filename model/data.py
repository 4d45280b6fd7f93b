"""Data sets as arrays or frames: the row container, merging and the holdout split (any task kind)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class Dataset:
    X: Any  # digits: (n, 64) float64 array, 0-16; tables: a typed DataFrame
    y: np.ndarray  # (n,) int64, or object for string classes
    origins: list[str] = field(default_factory=list)  # where each row came from, for error messages

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def origin(self, row: int) -> str:
        return self.origins[row] if self.origins else f"row {row}"


def merge(base: Dataset, extra: Dataset) -> Dataset:
    """Append `extra` (e.g. feedback) to `base`."""
    if len(extra) == 0:
        return base
    return Dataset(
        X=np.vstack([base.X, extra.X]),
        y=np.concatenate([base.y, extra.y]),
        origins=[*(base.origins or [f"row {i}" for i in range(len(base))]), *extra.origins],
    )


def split(data: Dataset, holdout_fraction: float, seed: int, stratify: bool = True) -> tuple[Dataset, Dataset]:
    """Train/holdout split, fixed by seed; stratified by class unless the target is a number."""
    idx = np.arange(len(data))
    train_idx, hold_idx = train_test_split(
        idx, test_size=holdout_fraction, random_state=seed, stratify=data.y if stratify else None
    )
    return _take(data, np.sort(train_idx)), _take(data, np.sort(hold_idx))


def _take(data: Dataset, idx: np.ndarray) -> Dataset:
    origins = [data.origins[i] for i in idx] if data.origins else []
    X = data.X.iloc[idx].reset_index(drop=True) if hasattr(data.X, "iloc") else data.X[idx]
    return Dataset(X=X, y=data.y[idx], origins=origins)
