"""The digits kind (recorded as "image"): any image becomes scikit-learn's 8x8, 0-16 digit features.

Sources: scikit-learn's bundled digits, or a folder with one sub-folder per digit. Served as an
upload (multipart or base64) or as rows of 64 numbers; a batch is a zip of images.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score

from model import images
from model.data import Dataset, merge
from model.errors import DataValidationError, ImageError
from model.features import MAX_VALUE, N_FEATURES, SIDE, image_to_features
from model.images import decode_image
from model.kinds import BatchInput, Inputs, InvalidRow, Limits, Loaded
from model.monitoring import psi
from model.serving import noisy_probes

if TYPE_CHECKING:
    from pymongo.database import Database
    from sklearn.pipeline import Pipeline

    from model.params import Params
    from model.snapshot import Snapshot
    from model.sources import SourcePolicy

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


class Digits:
    name = "image"
    batch_formats: tuple[str, ...] = ("zip",)
    batch_files = "a .zip of images"
    page = "index.html"

    # -- ingest ---------------------------------------------------------------------------------------

    def load(self, params: Params, sources: SourcePolicy, db: Database | None, data_dir: Path) -> Loaded:
        from model.store import load_feedback

        p = params.data
        if p.source == "digits":
            dataset = load_digits_dataset()
        else:
            if p.image_folder is None:
                raise DataValidationError("data.source is image_folder but data.image_folder is not set")
            dataset = load_image_folder(sources.local_path(p.image_folder))
        feedback_rows = 0
        if p.include_feedback and db is not None:
            feedback = load_feedback(db, p.labels)
            feedback_rows = len(feedback)
            dataset = merge(dataset, feedback)
        report = validate_dataset(dataset, p.labels, p.min_samples_per_class, p.max_class_imbalance)
        manifest = {"source": p.source, "feedback_rows": feedback_rows, "validation": report}
        return Loaded(dataset=dataset, hash=content_hash(dataset), labels=p.labels, manifest=manifest)

    def profile(self, train: Dataset, loaded: Loaded, bins: int) -> dict[str, Any]:
        return reference_profile(train, loaded.labels, bins)

    # -- training and the gate ------------------------------------------------------------------------

    def pipeline(self, params: Params, snap: Snapshot) -> Pipeline:
        from model.train import build_pipeline

        return build_pipeline(params.train, params.data.seed)

    def fit_rows(self, params: Params, train: Dataset) -> tuple[Any, np.ndarray]:
        """With train.augment_shifts, every image also moved by one pixel, so off-centre digits are read."""
        if not params.train.augment_shifts:
            return train.X, train.y
        shifted = [shift_images(train.X, dx, dy) for dx, dy in SHIFTS]
        return np.vstack([train.X, *shifted]), np.tile(train.y, 1 + len(shifted))

    def behaviour(self, model: Any, snap: Snapshot, params: Params) -> dict[str, object]:
        """Predicts its own input example; keeps most of its accuracy when images move one pixel."""
        X, y = snap.holdout.X, snap.holdout.y
        checks: dict[str, object] = {}
        try:
            proba = model.predict_proba(X[:5])
            checks["predicts_example"] = bool(
                proba.shape[0] == len(X[:5]) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
            )
        except Exception as exc:  # any failure here is the finding, recorded as a failed check
            checks["predicts_example"] = False
            checks["predicts_example_error"] = f"{type(exc).__name__}: {exc}"
        base = float(accuracy_score(y, model.predict(X)))
        shifted = [float(accuracy_score(y, model.predict(shift_images(X, dx, dy)))) for dx, dy in SHIFTS]
        drop = base - float(np.mean(shifted))
        checks["shift_accuracy_drop"] = round(drop, 6)
        checks["robust_to_shift"] = bool(drop <= params.promotion.max_shift_drop)
        return checks

    def metadata(self, snap: Snapshot) -> dict[str, Any]:
        return {}

    def model_files(self, snap: Snapshot) -> dict[str, bytes]:
        return {}

    # -- serving --------------------------------------------------------------------------------------

    def spec(self, metadata: dict[str, Any], path: Path | None) -> None:
        return None

    def example(self, raw: Any, spec: None) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64)

    def probes(self, example: np.ndarray, spec: None) -> np.ndarray:
        return noisy_probes(example)

    def text_columns(self, metadata: dict[str, Any]) -> None:
        return None

    def usage(self, spec: None) -> str:
        return 'send {"image": "<base64>"}, {"instances": [[64 numbers], ...]} or a multipart file field "file"'

    def from_image(self, data: bytes, spec: None, max_pixels: int) -> Inputs:
        features = image_to_features(decode_image(data, max_pixels))  # ImageError: the caller says which field
        return Inputs(
            X=features.reshape(1, N_FEATURES),
            rows=[features.tolist()],
            input_hashes=[hashlib.sha256(data).hexdigest()],
            images=[data],
        )

    def from_instances(self, instances: Any, spec: None, max_rows: int) -> Inputs:
        """Rows of 64 numbers from 0 to 16; an error names the first bad row and value."""
        if not isinstance(instances, list) or not instances:
            raise InvalidRow("instances must be a non-empty list of rows", "instances")
        if len(instances) > max_rows:
            raise InvalidRow(f"instances has {len(instances):,} rows; at most {max_rows:,} per request", "instances")
        try:
            X = np.array(instances)  # no dtype: strings, nulls and booleans show up as a non-numeric kind
        except ValueError:  # ragged rows
            X = np.array([], dtype=object)
        if X.dtype.kind not in "iuf" or X.shape != (len(instances), N_FEATURES):  # find the row to blame
            for i, row in enumerate(instances):
                if not isinstance(row, list) or len(row) != N_FEATURES:
                    got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                    raise InvalidRow(
                        f"instances[{i}] must be a list of {N_FEATURES} numbers, got {got}", f"instances[{i}]"
                    )
            i, j = _first_non_number(instances)
            raise InvalidRow(
                f"instances[{i}][{j}] is {instances[i][j]!r}; values must be numbers", f"instances[{i}][{j}]"
            )
        X = X.astype(np.float64, copy=False)
        bad = ~np.isfinite(X) | (X < 0) | (X > MAX_VALUE)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise InvalidRow(
                f"instances[{i}][{j}] is {instances[i][j]}; values must be finite numbers from 0 to {MAX_VALUE:g}",
                f"instances[{i}][{j}]",
            )
        hashes = [hashlib.sha256(X[i].tobytes()).hexdigest()[:32] for i in range(len(X))]
        return Inputs(X=X, rows=None, input_hashes=hashes, images=[None] * len(X))

    def read_batch(self, data: bytes, fmt: str, spec: None, limits: Limits) -> BatchInput:
        """A zip of images, each turned into features by the one preprocessing function."""
        features, keys = [], []
        for name, image in images.zip_images(data, limits.max_batch_images, limits.max_image_bytes):
            try:
                features.append(image_to_features(decode_image(image, limits.max_pixels)))
            except ImageError as exc:
                raise DataValidationError(f"{name}: {exc}") from exc
            keys.append(name)
        X = np.vstack(features)
        return BatchInput(X=X, rows=X.tolist(), keys=keys)

    def drift(self, profile: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[list[float], list[str]]:
        """PSI of each of the 64 features against the training histograms, on the same fixed bins."""
        rows = [d["features"] for d in docs if isinstance(d.get("features"), list) and len(d["features"]) == N_FEATURES]
        X = np.asarray(rows, dtype=np.float64).reshape(-1, N_FEATURES)
        edges = np.asarray(profile["bin_edges"])
        values = []
        for j, reference in enumerate(profile["feature_histograms"]):
            current, _ = np.histogram(np.clip(X[:, j], edges[0], edges[-1]), bins=edges)
            values.append(round(psi(np.asarray(reference), current), 6))
        return values, [f"feature {j}" for j in range(len(values))]


KIND = Digits()


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
    """One sub-folder per digit (its name is the label), any Pillow-readable image inside."""
    features, labels, origins = [], [], []
    for name, paths in images.class_folders(folder):
        try:
            label = int(name)
        except ValueError:
            raise DataValidationError(
                f"{folder / name}: class folders of digits must be named by their integer label (e.g. 0, 1, ... 9)"
            ) from None
        for path in paths:
            try:
                image = decode_image(path.read_bytes(), max_pixels=images.MAX_FOLDER_IMAGE_PIXELS)
                features.append(image_to_features(image))
            except ImageError as exc:
                raise DataValidationError(f"{path}: {exc}") from exc
            labels.append(label)
            origins.append(str(path))
    return Dataset(X=np.vstack(features), y=np.asarray(labels, dtype=np.int64), origins=origins)


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


def reference_profile(data: Dataset, labels: list[int], bins: int) -> dict[str, object]:
    """Per-feature histograms on fixed 0-16 bins and the label distribution, for drift checks."""
    edges = np.linspace(0.0, MAX_VALUE, bins + 1)
    histograms = [np.histogram(data.X[:, j], bins=edges)[0].tolist() for j in range(data.X.shape[1])]
    return {
        "bin_edges": edges.tolist(),
        "feature_histograms": histograms,
        "labels": labels,
        "label_counts": [int((data.y == label).sum()) for label in labels],
        "rows": len(data),
    }


def shift_images(X: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move every 8x8 image by (dx, dy) pixels, filling with background."""
    grid = X.reshape(-1, SIDE, SIDE)
    out = np.zeros_like(grid)
    src_y, dst_y = slice(max(0, -dy), SIDE - max(0, dy)), slice(max(0, dy), SIDE - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), SIDE - max(0, dx)), slice(max(0, dx), SIDE - max(0, -dx))
    out[:, dst_y, dst_x] = grid[:, src_y, src_x]
    return out.reshape(X.shape)


def _first_non_number(instances: list[Any]) -> tuple[int, int]:
    for i, row in enumerate(instances):
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return i, j
    return 0, 0
