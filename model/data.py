"""Data sets as arrays: loading, validation, content hashing, the holdout split and the drift profile."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from model.errors import DataValidationError, ImageError
from model.features import MAX_VALUE, N_FEATURES, decode_image, image_to_features

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
MAX_FOLDER_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class Dataset:
    X: Any  # images: (n, 64) float64 array, 0-16; tables: a typed DataFrame
    y: np.ndarray  # (n,) int64, or object for string classes
    origins: list[str] = field(default_factory=list)  # where each row came from, for error messages

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def origin(self, row: int) -> str:
        return self.origins[row] if self.origins else f"row {row}"


def load_digits_dataset() -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 8x8 images, no network needed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Dataset(
        X=bunch.data.astype(np.float64),
        y=bunch.target.astype(np.int64),
        origins=[f"digits row {i}" for i in range(len(bunch.target))],
    )


def load_image_folder(folder: Path) -> Dataset:
    """One sub-folder per class label (its name is the label), any Pillow-readable image inside."""
    if not folder.is_dir():
        raise DataValidationError(f"image folder {folder} does not exist")
    features, labels, origins = [], [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            label = int(class_dir.name)
        except ValueError as exc:
            raise DataValidationError(
                f"{class_dir}: class folders must be named by their integer label (e.g. 0, 1, ... 9)"
            ) from exc
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image = decode_image(path.read_bytes(), max_pixels=MAX_FOLDER_IMAGE_PIXELS)
                features.append(image_to_features(image))
            except ImageError as exc:
                raise DataValidationError(f"{path}: {exc}") from exc
            labels.append(label)
            origins.append(str(path))
    if not labels:
        raise DataValidationError(f"image folder {folder} holds no images in class sub-folders")
    return Dataset(X=np.vstack(features), y=np.asarray(labels, dtype=np.int64), origins=origins)


def merge(base: Dataset, extra: Dataset) -> Dataset:
    """Append `extra` (e.g. feedback) to `base`."""
    if len(extra) == 0:
        return base
    return Dataset(
        X=np.vstack([base.X, extra.X]),
        y=np.concatenate([base.y, extra.y]),
        origins=[*(base.origins or [f"row {i}" for i in range(len(base))]), *extra.origins],
    )


def validate_dataset(data: Dataset, labels: list[int], min_per_class: int, max_imbalance: float) -> dict[str, object]:
    """Check shape, values, labels, duplicates and balance; raise naming the first bad row."""
    X, y = data.X, data.y
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise DataValidationError(f"expected {N_FEATURES} features per row, got shape {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataValidationError(f"{X.shape[0]} feature rows but {y.shape[0]} labels")
    if len(data) == 0:
        raise DataValidationError("the data set is empty")
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1) | (X < 0).any(axis=1) | (X > MAX_VALUE).any(axis=1))
    if bad.size:
        raise DataValidationError(
            f"{data.origin(int(bad[0]))}: feature values must be finite and within 0-{MAX_VALUE:g} "
            f"({bad.size} bad rows)"
        )
    unknown = np.flatnonzero(~np.isin(y, labels))
    if unknown.size:
        row = int(unknown[0])
        raise DataValidationError(f"{data.origin(row)}: label {y[row]} is not in the label set {labels}")
    counts = Counter(int(v) for v in y)
    missing = [label for label in labels if counts.get(label, 0) < min_per_class]
    if missing:
        raise DataValidationError(
            f"classes {missing} have fewer than {min_per_class} samples (counts: {dict(sorted(counts.items()))})"
        )
    imbalance = max(counts.values()) / min(counts.values())
    if imbalance > max_imbalance:
        raise DataValidationError(
            f"class imbalance {imbalance:.1f} exceeds {max_imbalance:g} (counts: {dict(sorted(counts.items()))})"
        )
    _, first_index, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    conflicting = sum(1 for group in np.unique(inverse) if np.unique(y[inverse == group]).size > 1)
    if conflicting:
        raise DataValidationError(f"{conflicting} identical images carry different labels")
    return {
        "rows": len(data),
        "class_counts": {str(k): v for k, v in sorted(counts.items())},
        "duplicates": int(len(data) - first_index.size),
        "imbalance": round(imbalance, 3),
    }


def content_hash(data: Dataset) -> str:
    """SHA-256 of the features and labels, independent of row origins."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data.X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(data.y, dtype=np.int64).tobytes())
    return digest.hexdigest()


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


def reference_profile(data: Dataset, labels: list[int], bins: int) -> dict[str, object]:
    """Per-feature histograms on fixed 0-16 bins and the label distribution, for drift checks."""
    edges = np.linspace(0.0, MAX_VALUE, bins + 1)
    histograms = [np.histogram(data.X[:, j], bins=edges)[0].tolist() for j in range(data.X.shape[1])]
    label_counts = [int((data.y == label).sum()) for label in labels]
    return {
        "bin_edges": edges.tolist(),
        "feature_histograms": histograms,
        "labels": labels,
        "label_counts": label_counts,
        "rows": len(data),
    }
