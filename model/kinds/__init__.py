"""Task kinds: what differs between digits and tables (and photos) lives in one module per kind.

Everything outside this package asks the kind and never branches on which kind it is:
`configured(params)` at ingest, `named(name)` for a snapshot (its manifest's "task") or a registered
model (its MLmodel metadata's "task"). A kind owns reading, validating, hashing and profiling its
source; the feature step of its Pipeline and any training-time augmentation; its behavioural checks
for the gate; what serving needs from a model's metadata (its `spec`: a table's schema); parsing
served rows and uploads; reading batch files; the probes that check a compiled graph; and the features
drift compares. Adding a kind: ARCHITECTURE.md "Adding a task kind".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from model.data import Dataset

if TYPE_CHECKING:
    from pymongo.database import Database
    from sklearn.pipeline import Pipeline

    from model.params import Params
    from model.snapshot import Snapshot
    from model.sources import SourcePolicy


@dataclass(frozen=True)
class Loaded:
    """A validated data set, before the holdout split."""

    dataset: Dataset
    hash: str  # of the content (features and labels), not of the file it came from
    labels: list[Any]  # the classes; [] for a numeric target
    manifest: dict[str, Any]  # what the snapshot's manifest says of the source (source, validation, ...)
    schema: dict[str, Any] | None = None  # a table's columns, written beside the snapshot
    stratify: bool = True  # split by class (False for a numeric target)
    profiled: Any = None  # what the kind's profile() needs beside the rows, not written anywhere


@dataclass(frozen=True)
class Inputs:
    """Rows to score, as the Pipeline takes them, and what the prediction record keeps of each."""

    X: Any  # digits: an (n, 64) array; tables: one array per column (tabular.columns_of)
    rows: list[Any] | None  # what each record stores as its features; None: X.tolist() when needed
    input_hashes: list[str]
    images: list[bytes | None]


@dataclass(frozen=True)
class Limits:
    max_rows: int = 1_000  # rows of one request
    max_pixels: int = 40_000_000  # pixels of one decoded image (decompression bombs)
    max_image_bytes: int = 10 << 20  # bytes of one image in a batch zip
    max_batch_images: int = 10_000


@dataclass(frozen=True)
class BatchInput:
    X: Any  # as the Pipeline takes it
    rows: Sequence[Any]  # what each prediction record stores as its features
    keys: list[str]  # a name per row for the result file: the row id or number, or the image's path
    columns: Any = None  # a table's input columns, appended to the result file


class InvalidRow(ValueError):
    """A served row or upload the model cannot take; the message says what to send instead."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class TaskKind(Protocol):
    name: str  # recorded as "task" in the manifest, the MLmodel metadata and the version's tags
    batch_formats: tuple[str, ...]  # file suffixes POST /batches takes
    batch_files: str  # how errors name them
    page: str  # the web page's template

    def load(self, params: Params, sources: SourcePolicy, db: Database | None, data_dir: Path) -> Loaded: ...

    def profile(self, train: Dataset, loaded: Loaded, bins: int) -> dict[str, Any]: ...

    def pipeline(self, params: Params, snap: Snapshot) -> Pipeline: ...

    def fit_rows(self, params: Params, train: Dataset) -> tuple[Any, np.ndarray]: ...

    def behaviour(self, model: Any, snap: Snapshot, params: Params) -> dict[str, object]: ...

    def metadata(self, snap: Snapshot) -> dict[str, Any]: ...

    def model_files(self, snap: Snapshot) -> dict[str, bytes]: ...

    def spec(self, metadata: dict[str, Any], path: Path | None) -> Any: ...

    def example(self, raw: Any, spec: Any) -> Any: ...

    def probes(self, example: Any, spec: Any) -> Any: ...

    def text_columns(self, metadata: dict[str, Any]) -> list[str] | None: ...

    def usage(self, spec: Any) -> str: ...

    def from_instances(self, instances: Any, spec: Any, max_rows: int) -> Inputs: ...

    def from_image(self, data: bytes, spec: Any, max_pixels: int) -> Inputs: ...

    def read_batch(self, data: bytes, fmt: str, spec: Any, limits: Limits) -> BatchInput: ...

    def drift(self, profile: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[list[float], list[str]]: ...

    def unsure(self, proba: np.ndarray, X: Any, below: float) -> list[str | None]:
        """Per row, why a classifier's answer is only a guess (it is still given, flagged), or None."""
        ...


def low_confidence(proba: np.ndarray, below: float) -> list[str | None]:
    """The rule every kind applies: the best class's probability is under `below`."""
    best = proba.max(axis=1)
    reasons: list[str | None] = [None] * len(best)
    for i in np.flatnonzero(best < below).tolist():
        reasons[i] = f"confidence {best[i]:.2f} is below {below}"
    return reasons


def named(name: str | None) -> TaskKind:
    """The kind a snapshot or a registered model records (models from before kinds were recorded: digits)."""
    from model.kinds import digits, photo, table

    kinds: dict[str, TaskKind] = {kind.name: kind for kind in (digits.KIND, table.KIND, photo.KIND)}
    try:
        return kinds[name or digits.KIND.name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; known: {sorted(kinds)}") from None


def configured(params: Params, sources: SourcePolicy) -> TaskKind:
    """The kind params.yaml asks for. An image folder is photos unless every class folder is named by a
    digit (data.features: digits or backbone decides instead)."""
    from model import images
    from model.kinds import digits, photo

    if params.task != "image" or params.data.source != "image_folder" or params.data.image_folder is None:
        return named(params.task)
    if params.data.features != "auto":
        return digits.KIND if params.data.features == "digits" else photo.KIND
    folders = [name for name, _ in images.class_folders(sources.local_path(params.data.image_folder))]
    return digits.KIND if all(name in "0123456789" and len(name) == 1 for name in folders) else photo.KIND
