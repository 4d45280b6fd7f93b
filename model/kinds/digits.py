"""The digits kind (recorded as "image"): any image becomes `side*side` ink values from 0 to 16.

Sources: scikit-learn's bundled 8x8 digits, MNIST with digits rendered in fonts (model/digit_sets.py),
or a folder with one sub-folder per digit. The layout's side is recorded in the model's metadata
(`{"digits": {"side": 16}}`; models without it are 8x8) and read back to serve it: an upload
(multipart or base64), rows of side*side numbers, or a zip of images as a batch.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from sklearn.metrics import accuracy_score

from model import digit_sets, images
from model.data import Dataset, merge
from model.errors import DataValidationError
from model.features import LEGACY_SIDE, MAX_VALUE, image_to_features, side_of
from model.images import decode_image
from model.kinds import BatchInput, Inputs, InvalidRow, Limits, Loaded, low_confidence
from model.monitoring import psi
from model.serving import noisy_probes

if TYPE_CHECKING:
    from pymongo.database import Database
    from sklearn.pipeline import Pipeline

    from model.params import Params
    from model.snapshot import Snapshot
    from model.sources import SourcePolicy

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))
MNIST_SIDE = 16  # the default layout of MNIST-trained models: chosen by measurement (docs in README)
_DRAFT = (320, 320)  # a large JPEG is decoded at 1/2 to 1/8 scale, no smaller than this
# "unsure": answered with the best guess, flagged (see `unsure`)
UNSURE_MARGIN = 0.25  # between the two most likely digits


class Digits:
    name = "image"
    batch_formats: tuple[str, ...] = ("zip",)
    batch_files = "a .zip of images"
    page = "index.html"

    # -- ingest ---------------------------------------------------------------------------------------

    def load(self, params: Params, sources: SourcePolicy, db: Database | None, data_dir: Path) -> Loaded:
        from model.store import load_feedback

        p = params.data
        side = source_side(params)
        if p.source == "digits":
            dataset = load_digits_dataset()
        elif p.source == "mnist":
            dataset = load_mnist_dataset(p.mnist_archive, p.mnist_rows, p.font_rows, p.seed, side)
        else:
            if p.image_folder is None:
                raise DataValidationError("data.source is image_folder but data.image_folder is not set")
            dataset = load_image_folder(sources.local_path(p.image_folder), side)
        feedback_rows = 0
        if p.include_feedback and db is not None:
            feedback = load_feedback(db, p.labels, side * side)  # feedback on another layout is left out
            if len(feedback):
                feedback_rows = len(feedback)
                dataset = merge(dataset, feedback)
        report = validate_dataset(dataset, p.labels, p.min_samples_per_class, p.max_class_imbalance, side)
        manifest = {"source": p.source, "side": side, "feedback_rows": feedback_rows, "validation": report}
        return Loaded(dataset=dataset, hash=content_hash(dataset), labels=p.labels, manifest=manifest)

    def profile(self, train: Dataset, loaded: Loaded, bins: int) -> dict[str, Any]:
        return reference_profile(train, loaded.labels, bins)

    # -- training and the gate ------------------------------------------------------------------------

    def pipeline(self, params: Params, snap: Snapshot) -> Pipeline:
        from model.train import build_pipeline

        return build_pipeline(params.train, params.data.seed)

    def fit_rows(self, params: Params, train: Dataset) -> tuple[Any, np.ndarray]:
        """With train.augment_shifts, every 8x8 image also moved by one pixel, so off-centre digits are
        read (larger layouts are centred by mass, which makes shifted copies moot)."""
        if not params.train.augment_shifts or side_of(train.X.shape[1]) != LEGACY_SIDE:
            return train.X, train.y
        shifted = [shift_images(train.X, dx, dy) for dx, dy in SHIFTS]
        return np.vstack([train.X, *shifted]), np.tile(train.y, 1 + len(shifted))

    def behaviour(self, model: Any, snap: Snapshot, params: Params) -> dict[str, object]:
        """Predicts its own input example; keeps most of its accuracy when images move one pixel; reads
        the evaluation sets (digits as people upload them, model/digit_sets.py): `<set>_accuracy`."""
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
        side = side_of(X.shape[1])
        for name in digit_sets.EVALUATION_SETS if params.promotion.evaluation_sets else ():
            found = evaluation_features(name, side, params.data.mnist_archive)
            if found is not None:
                checks[f"{name}_accuracy"] = round(float(accuracy_score(found[1], model.predict(found[0]))), 6)
        return checks

    def metadata(self, snap: Snapshot) -> dict[str, Any]:
        """The feature layout, which serving, batches and the instances contract follow."""
        return {"digits": {"side": side_of(snap.train.X.shape[1])}}

    def model_files(self, snap: Snapshot) -> dict[str, bytes]:
        return {}

    # -- serving --------------------------------------------------------------------------------------

    def spec(self, metadata: dict[str, Any], path: Path | None) -> int:
        """The side of the model's layout (models registered before layouts were recorded: 8)."""
        return int((metadata.get("digits") or {}).get("side", LEGACY_SIDE))

    def example(self, raw: Any, spec: int) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64)

    def probes(self, example: np.ndarray, spec: int) -> np.ndarray:
        return noisy_probes(example)

    def text_columns(self, metadata: dict[str, Any]) -> None:
        return None

    def usage(self, spec: int) -> str:
        return (
            f'send {{"image": "<base64>"}}, {{"instances": [[{spec * spec} numbers from 0 to 16], ...]}} '
            'or a multipart file field "file"'
        )

    def from_image(self, data: bytes, spec: int, max_pixels: int) -> Inputs:
        image = decode_image(data, max_pixels, draft=_DRAFT)  # ImageError: the caller says which field
        features = image_to_features(image, spec)
        return Inputs(
            X=features.reshape(1, spec * spec),
            rows=[features.tolist()],
            input_hashes=[hashlib.sha256(data).hexdigest()],
            images=[data],
        )

    def from_instances(self, instances: Any, spec: int, max_rows: int) -> Inputs:
        """Rows of side*side numbers from 0 to 16; an error names the first bad row and value."""
        n_features = spec * spec
        if not isinstance(instances, list) or not instances:
            raise InvalidRow("instances must be a non-empty list of rows", "instances")
        if len(instances) > max_rows:
            raise InvalidRow(f"instances has {len(instances):,} rows; at most {max_rows:,} per request", "instances")
        try:
            X = np.array(instances)  # no dtype: strings, nulls and booleans show up as a non-numeric kind
        except ValueError:  # ragged rows
            X = np.array([], dtype=object)
        if X.dtype.kind not in "iuf" or X.shape != (len(instances), n_features):  # find the row to blame
            for i, row in enumerate(instances):
                if not isinstance(row, list) or len(row) != n_features:
                    got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                    raise InvalidRow(
                        f"instances[{i}] must be a list of {n_features} numbers ({spec}x{spec} pixels from 0 to "
                        f"16), got {got}",
                        f"instances[{i}]",
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

    def read_batch(self, data: bytes, fmt: str, spec: int, limits: Limits) -> BatchInput:
        """A zip of images, each turned into features by the one preprocessing function."""
        features, keys = [], []
        for name, image in images.zip_images(data, limits.max_batch_images, limits.max_image_bytes):
            with images.naming(name):
                features.append(image_to_features(decode_image(image, limits.max_pixels, draft=_DRAFT), spec))
            keys.append(name)
        X = np.vstack(features)
        return BatchInput(X=X, rows=X.tolist(), keys=keys)

    def drift(self, profile: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[list[float], list[str]]:
        """PSI of each feature against the training histograms, on the same fixed bins."""
        n_features = len(profile["feature_histograms"])
        rows = [d["features"] for d in docs if isinstance(d.get("features"), list) and len(d["features"]) == n_features]
        X = np.asarray(rows, dtype=np.float64).reshape(-1, n_features)
        edges = np.asarray(profile["bin_edges"])
        values = []
        for j, reference in enumerate(profile["feature_histograms"]):
            current, _ = np.histogram(np.clip(X[:, j], edges[0], edges[-1]), bins=edges)
            values.append(round(psi(np.asarray(reference), current), 6))
        return values, [f"feature {j}" for j in range(len(values))]

    def unsure(self, proba: np.ndarray, X: Any, below: float) -> list[str | None]:
        return unsure_reasons(proba, X, below)


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


def source_side(params: Params) -> int:
    """The layout a source is ingested at: scikit-learn's digits are 8x8 scans; MNIST 16 unless data.side."""
    p = params.data
    if p.source == "digits":
        return LEGACY_SIDE
    return p.side or (MNIST_SIDE if p.source == "mnist" else LEGACY_SIDE)


def load_mnist_dataset(archive: Path, rows: int, font_rows: int, seed: int, side: int) -> Dataset:
    """`rows` MNIST training digits and `font_rows` digits rendered in fonts, through the one preprocessing."""
    mnist = digit_sets.subset(digit_sets.read_mnist(archive, "train"), rows, seed)
    # half of them turned a little, as paper and phones turn them (deskewing undoes slant, not rotation)
    angles = np.random.default_rng(seed).uniform(-12, 12, len(mnist.labels)) * (np.arange(len(mnist.labels)) % 2)
    features = [
        image_to_features(digit_sets.mnist_image(pixels).rotate(float(angle), Image.Resampling.BILINEAR), side)
        for pixels, angle in zip(mnist.images, angles, strict=True)
    ]
    origins = [f"{digit_sets.MNIST_ARCHIVE.file_name} train digit {i}" for i in range(len(mnist.labels))]
    fonts, font_labels = digit_sets.font_digits(font_rows, seed)
    features += [image_to_features(image, side) for image in fonts]
    origins += [f"font digit {i}" for i in range(font_rows)]
    return Dataset(
        X=np.vstack(features) if features else np.empty((0, side * side)),
        y=np.concatenate([mnist.labels, font_labels]).astype(np.int64),
        origins=origins,
    )


def evaluation_features(name: str, side: int, mnist_archive: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """An evaluation set's features at `side` and its labels (None when its source is missing), per process."""
    return _evaluation_features(name, side, mnist_archive)


@lru_cache(maxsize=8)
def _evaluation_features(name: str, side: int, mnist_archive: Path) -> tuple[np.ndarray, np.ndarray] | None:
    found = digit_sets.evaluation_set(name, mnist_archive)
    if found is None:
        return None
    X = np.vstack(
        [
            image_to_features(decode_image(data, images.MAX_FOLDER_IMAGE_PIXELS, draft=_DRAFT), side)
            for data in found.images
        ]
    )
    return X, found.labels


def unsure_reasons(proba: np.ndarray, features: np.ndarray, below: float) -> list[str | None]:
    """Per row, why the answer should be flagged unsure (it is still the best guess), or None.

    Confidence under `below` (the model's unsure_below), two digits nearly tied, or an input unlike a
    digit: ink covering most of the frame (a photo, a filled page) or spread far wider than tall
    (several digits side by side).
    """
    proba = np.asarray(proba, dtype=np.float64)
    features = np.asarray(features)
    side = side_of(features.shape[1])
    reasons = low_confidence(proba, below)  # the rule every kind applies comes first
    for i, measures in enumerate(_measures(proba, features, side)):
        if reasons[i] is None:
            reasons[i] = _digit_rules(*measures, side)
    return reasons


def _measures(proba: np.ndarray, features: np.ndarray, side: int) -> list[tuple[float, float, int, int]]:
    """Per row: the gap between the two likeliest digits, the share of the frame inked, the inked
    height and width (in rows and columns of the layout). One row (an upload, a drawing) is measured
    with a fifth of the array operations a batch takes."""
    if len(proba) == 1:
        top = sorted(proba[0].tolist())
        gap = top[-1] - top[-2] if len(top) > 1 else 1.0
        frame = features[0].reshape(side, side) > MAX_VALUE / 2
        rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
        height = int(rows[-1] - rows[0] + 1) if rows.size else 0
        width = int(cols[-1] - cols[0] + 1) if cols.size else 0
        return [(gap, int(np.count_nonzero(frame)) / (side * side), height, width)]
    if proba.shape[1] > 1:
        top2 = np.partition(proba, -2, axis=1)[:, -2:]
        gaps = top2[:, 1] - top2[:, 0]
    else:
        gaps = np.ones(len(proba))
    inked: np.ndarray = features.reshape(len(proba), side, side) > MAX_VALUE / 2
    share = np.count_nonzero(inked, axis=(1, 2)) / (side * side)
    heights, widths = _extent(np.any(inked, axis=2)), _extent(np.any(inked, axis=1))
    return list(zip(gaps.tolist(), share.tolist(), heights.tolist(), widths.tolist(), strict=True))


def _digit_rules(gap: float, ink: float, height: int, width: int, side: int) -> str | None:
    """The first of the digits' own rules a confident answer breaks, in words (None: none)."""
    if gap < UNSURE_MARGIN:
        return f"the two likeliest digits are {gap:.2f} apart (under {UNSURE_MARGIN})"
    if ink > _MAX_INK_SHARE[side == LEGACY_SIDE]:
        return f"ink covers {ink:.0%} of the frame: not one digit"
    if height > 0 and width > _MAX_WIDTH_RATIO * height:
        return "the ink is far wider than tall: several digits?"
    return None


def _extent(inked_lines: np.ndarray) -> np.ndarray:
    """Per row of `inked_lines` (n x side booleans), the span from the first inked line to the last (0: none)."""
    first = inked_lines.argmax(axis=1)
    last = inked_lines.shape[1] - inked_lines[:, ::-1].argmax(axis=1)
    return (last - first) * inked_lines.any(axis=1)


_MAX_INK_SHARE = {False: 0.3, True: 0.65}  # MNIST layouts (a digit in a 20/28 box) / the 8x8 scans
_MAX_WIDTH_RATIO = 1.6


def load_image_folder(folder: Path, side: int = LEGACY_SIDE) -> Dataset:
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
            with images.naming(str(path)):
                image = decode_image(path.read_bytes(), max_pixels=images.MAX_FOLDER_IMAGE_PIXELS, draft=_DRAFT)
                features.append(image_to_features(image, side))
            labels.append(label)
            origins.append(str(path))
    return Dataset(X=np.vstack(features), y=np.asarray(labels, dtype=np.int64), origins=origins)


def validate_dataset(
    data: Dataset, labels: list[int], min_per_class: int, max_imbalance: float, side: int = LEGACY_SIDE
) -> dict[str, object]:
    """Check shape, values, labels, duplicates and balance; raise naming the first bad row."""
    X, y = data.X, data.y
    if X.ndim != 2 or X.shape[1] != side * side:
        raise DataValidationError(f"expected {side * side} features ({side}x{side}) per row, got shape {X.shape}")
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
    """Move every image by (dx, dy) pixels, filling with background."""
    side = side_of(X.shape[1])
    grid = X.reshape(-1, side, side)
    out = np.zeros_like(grid)
    src_y, dst_y = slice(max(0, -dy), side - max(0, dy)), slice(max(0, dy), side - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), side - max(0, dx)), slice(max(0, dx), side - max(0, -dx))
    out[:, dst_y, dst_x] = grid[:, src_y, src_x]
    return out.reshape(X.shape)


def _first_non_number(instances: list[Any]) -> tuple[int, int]:
    for i, row in enumerate(instances):
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return i, j
    return 0, 0
