"""The table kind (recorded as "tabular"): a CSV or Parquet table with a target column.

Its machinery (schema inference and enforcement, the ColumnTransformer, the column profile) is in
model/tabular.py; a numeric target makes it a regressor (model/regression.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from model import regression, store, tabular
from model.data import Dataset
from model.errors import DataValidationError
from model.kinds import BatchInput, Inputs, InvalidRow, Limits, Loaded, low_confidence
from model.monitoring import psi
from model.tabular import Schema

if TYPE_CHECKING:
    from pymongo.database import Database
    from sklearn.pipeline import Pipeline

    from model.params import Params
    from model.snapshot import Snapshot
    from model.sources import SourcePolicy

log = logging.getLogger(__name__)
PROBES = 64
UNSEEN = "__never_seen__"


class Table:
    name = "tabular"
    batch_formats: tuple[str, ...] = ("csv", "parquet")
    batch_files = "a .csv or .parquet file"
    page = "table.html"

    # -- ingest ---------------------------------------------------------------------------------------

    def load(self, params: Params, sources: SourcePolicy, db: Database | None, data_dir: Path) -> Loaded:
        """Read the table, infer its schema (or enforce the pinned one) and validate it."""
        p, t = params.data, params.tabular
        source = redact_source(t.source)  # what is recorded: the manifest, MLflow's dataset_source, the pin's name
        frame = read_source(t.source, sources)
        numbering = [c for c in tabular.row_number_columns(frame) if c not in (t.target, *t.drop)]
        if numbering:
            log.info("dropping %s: it only numbers the rows", ", ".join(repr(c) for c in numbering))
            frame = frame.drop(columns=numbering)
        target = frame[t.target] if t.target in frame.columns else None  # absent: infer_schema says so
        task_type, why = regression.infer_type(
            target[~tabular.missing_mask(target)] if target is not None else pd.Series(dtype=object), t.task_type
        )
        log.info("prediction type: %s (%s)", task_type, why)
        inferred = tabular.infer_schema(frame, t, task_type)
        # the first schema inferred for this source and target is pinned in MongoDB (model_events), so
        # every later ingest is held to it, on whichever host it runs
        pin = f"{_slug(source)}--{_slug(t.target)}"
        pinning = t.pin_schema and db is not None
        pinned = store.pinned_schema(db, pin) if pinning and db is not None else None
        legacy = data_dir / "schemas" / f"{pin}.json"  # where releases before MongoDB pins kept it
        if pinning and db is not None and pinned is None and legacy.exists():
            pinned = store.pin_schema(db, pin, json.loads(legacy.read_text()))
            log.info("moved the schema pinned at %s into MongoDB (model_events)", legacy)
        schema = inferred
        if pinned is not None:
            schema = Schema.from_dict(pinned)
            tabular.check_compatible(schema, inferred)
            log.info("enforcing the schema pinned as %s", pin)
        frame, unlabelled = tabular.drop_unlabelled(frame, schema)
        if unlabelled:
            log.info("dropped %d rows whose target '%s' is missing", unlabelled, schema.target)
        X, y = tabular.enforce_schema(frame, schema)
        report = tabular.validate_table(X, y, schema, p.min_samples_per_class, p.max_class_imbalance)
        report["dropped_missing_target"] = unlabelled
        report["dropped_row_number_columns"] = numbering
        report["missing_cells"] = {c: int(n) for c, n in X.isna().sum().items() if n}
        report["task_type"] = {"type": schema.task_type, "why": why}
        if pinning and pinned is None and db is not None:
            ours = json.loads(json.dumps(schema.to_dict()))
            if store.pin_schema(db, pin, ours) != ours:
                raise DataValidationError(
                    f"another ingest of {source} pinned its schema at the same moment: run ingest again "
                    "to be held to that one"
                )
            log.info("pinned the inferred schema as %s", pin)
        manifest = {
            "source": source,
            "feedback_rows": 0,
            "validation": report,
            "schema_pin": pin if pinning else None,
        }
        return Loaded(
            dataset=Dataset(X=X, y=y),
            hash=tabular.table_hash(X, y),
            labels=schema.classes,
            manifest=manifest,
            schema=schema.to_dict(),
            stratify=not schema.regression,
        )

    def profile(self, train: Dataset, loaded: Loaded, bins: int) -> dict[str, Any]:
        assert loaded.schema is not None
        return tabular.reference_profile(train.X, train.y, Schema.from_dict(loaded.schema), bins)

    # -- training and the gate ------------------------------------------------------------------------

    def pipeline(self, params: Params, snap: Snapshot) -> Pipeline:
        from model.train import build_pipeline

        schema = self.spec({"schema": snap.schema})
        built = build_pipeline(params.train, params.data.seed, schema.task_type, params.tabular.log_target)
        return tabular.with_preprocessor(built, schema)

    def fit_rows(self, params: Params, train: Dataset) -> tuple[Any, np.ndarray]:
        return train.X, train.y

    def behaviour(self, model: Any, snap: Snapshot, params: Params) -> dict[str, object]:
        """Predicts its own input example, and still answers when every categorical value is one it never saw."""
        example = snap.holdout.X[:5]
        unseen = example.assign(**{name: UNSEEN for name in self.spec({"schema": snap.schema}).categorical})
        checks: dict[str, object] = {}
        for name, frame in (("predicts_example", example), ("handles_unknown_categories", unseen)):
            try:
                if not hasattr(model, "classes_"):  # a regressor: one finite value per row
                    values = np.asarray(model.predict(frame), dtype=np.float64)
                    checks[name] = bool(values.shape == (len(frame),) and np.isfinite(values).all())
                    continue
                proba = model.predict_proba(frame)
                checks[name] = bool(proba.shape[0] == len(frame) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6))
            except Exception as exc:  # any failure here is the finding, recorded as a failed check
                checks[name] = False
                checks[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
        return checks

    def metadata(self, snap: Snapshot) -> dict[str, Any]:
        return {"schema": snap.schema}

    def model_files(self, snap: Snapshot) -> dict[str, bytes]:
        return {}

    # -- serving --------------------------------------------------------------------------------------

    def spec(self, metadata: dict[str, Any], path: Path | None = None) -> Schema:
        if not metadata.get("schema"):
            raise ValueError("a tabular model needs its schema in the MLmodel metadata")
        return Schema.from_dict(metadata["schema"])

    def example(self, raw: Any, spec: Schema) -> pd.DataFrame:
        return tabular.with_nan(raw)

    def probes(self, example: pd.DataFrame, spec: Schema, rows: int = PROBES, seed: int = 0) -> pd.DataFrame:
        """The example and perturbed copies: numbers moved across the observed range, categories redrawn,
        and cells emptied in the columns that may be missing."""
        rng = np.random.default_rng(seed)
        frame = example.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
        for column in spec.columns:
            numeric = column.kind == tabular.NUMERIC
            if numeric:
                low = column.observed_min if column.observed_min is not None else float(np.nanmin(frame[column.name]))
                high = column.observed_max if column.observed_max is not None else float(np.nanmax(frame[column.name]))
                frame[column.name] = rng.uniform(low, high, rows) if high > low else frame[column.name]
            elif column.categories:
                frame[column.name] = rng.choice(column.categories, rows)
            if spec.imputes and column.missing_share > 0:
                values = frame[column.name].astype(np.float64 if numeric else object)
                values[rng.random(rows) < 0.25] = np.nan
                frame[column.name] = values
        return pd.concat([example, frame], ignore_index=True)

    def text_columns(self, metadata: dict[str, Any]) -> list[str]:
        return self.spec(metadata).categorical

    def usage(self, spec: Schema) -> str:
        example = {c.name: "..." for c in spec.columns[:3]}
        return f'this model scores table rows: send {{"instances": [{json.dumps(example)[:-1]}, ...}}]}}'

    def from_image(self, data: bytes, spec: Schema, max_pixels: int) -> Inputs:
        raise InvalidRow(f"not an image: {self.usage(spec)} to POST /predict", "instances")

    def from_instances(self, instances: Any, spec: Schema, max_rows: int) -> Inputs:
        """Rows as objects keyed by column, each checked against the model's schema; errors name the field."""
        if not isinstance(instances, list) or not instances:
            raise InvalidRow("instances must be a non-empty list of objects, one per row", "instances")
        if len(instances) > max_rows:
            raise InvalidRow(
                f"instances has {len(instances):,} rows; at most {max_rows:,} per request (use POST /batches for more)",
                "instances",
            )
        names = spec.names
        known = set(names)
        rows = []
        for i, row in enumerate(instances):
            if not isinstance(row, dict):
                raise InvalidRow(
                    f"instances[{i}] must be an object with the columns {names}, got {type(row).__name__}",
                    f"instances[{i}]",
                )
            missing = [name for name in names if name not in row]
            if missing:
                raise InvalidRow(f"instances[{i}] lacks the columns {missing}", f"instances[{i}].{missing[0]}")
            unknown = [key for key in row if key not in known]
            if unknown:
                raise InvalidRow(
                    f"instances[{i}].{unknown[0]} is not a column of this model (its columns: {names})",
                    f"instances[{i}].{unknown[0]}",
                )
            rows.append(
                {column.name: _cell(row[column.name], column, spec, f"instances[{i}]") for column in spec.columns}
            )
        hashes = [hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()[:32] for row in rows]
        return Inputs(X=tabular.columns_of(rows, spec), rows=rows, input_hashes=hashes, images=[None] * len(rows))

    def read_batch(self, data: bytes, fmt: str, spec: Schema, limits: Limits) -> BatchInput:
        """A CSV or Parquet upload checked against the model's schema (unseen categories allowed).

        The file may be the training file itself: the target and other extra columns are ignored, and
        the first id column (tabular.drop) present names each row in the results; else the row number.
        """
        frame = tabular.read_table(f"upload.{fmt}", data=data)
        X = tabular.enforce_features(frame, spec, strict_categories=False, training=False)
        id_column = next((c for c in spec.id_columns if c in frame.columns), None)
        keys = frame[id_column].astype(str).tolist() if id_column else [str(i + 1) for i in range(len(X))]
        return BatchInput(X=X, rows=_Rows(X), keys=keys, columns=X)

    def drift(self, profile: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[list[float], list[str]]:
        """PSI of every column: numeric on its quantile bins, categorical on category shares; missing
        cells are one more bin."""
        rows = [doc["features"] for doc in docs if isinstance(doc.get("features"), dict)]
        values = []
        for column in profile["columns"]:
            reference = tabular.reference_counts(column)
            current = tabular.current_counts(column, [row.get(column["name"]) for row in rows])
            values.append(round(psi(reference, current), 6))
        return values, [c["name"] for c in profile["columns"]]

    def unsure(self, proba: np.ndarray, X: Any, below: float) -> list[str | None]:
        return low_confidence(proba, below)


class _Rows(Sequence[dict[str, Any]]):
    """A batch's rows as their prediction records store them (None where a cell is missing), made a
    slice at a time when asked: batch scoring asks a chunk at a time, while MongoDB stores the one
    before, rather than spending 2 s on a million dicts before the first chunk is scored."""

    def __init__(self, X: pd.DataFrame) -> None:
        self._X = X
        self._names = list(X.columns)  # a list: iterating the frame's Index once per row took 9 s a million rows

    def __len__(self) -> int:
        return len(self._X)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, int):
            row = range(len(self))[index]  # a negative index counts from the end; past it, IndexError
            return self[row : row + 1][0]
        part = self._X.iloc[index]
        columns = [part[name].astype(object).where(part[name].notna(), None).tolist() for name in self._names]
        return [dict(zip(self._names, values, strict=True)) for values in zip(*columns, strict=True)]


KIND = Table()


def _cell(value: Any, column: tabular.Column, schema: Schema, row: str) -> float | str | None:
    where = f"{row}.{column.name}"
    if value is None and schema.imputes and column.missing_share > 0:
        return None  # imputed by the Pipeline, as in training
    if value is None:
        raise InvalidRow(f"{where} is null; send a value: this column was never missing in the training data", where)
    if column.kind == tabular.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidRow(f"{where} is {value!r}; it must be a finite number", where)
        if (column.min is not None and value < column.min) or (column.max is not None and value > column.max):
            raise InvalidRow(f"{where} is {value}; it must be within [{column.min}, {column.max}]", where)
        return float(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise InvalidRow(
            f"{where} is {value!r}; it must be a category such as {(column.categories or ['...'])[:5]}", where
        )
    return str(value)


def read_source(source: str, sources: SourcePolicy) -> Any:
    """A table from a bundled example, an allowed URL or a file inside the data-source directory."""
    if source.startswith(("http://", "https://")):
        shown = redact_source(source)
        return tabular.read_table(shown, data=sources.fetch(source, shown))
    if source.startswith("example:"):
        return tabular.read_table(source)
    return tabular.read_table(str(sources.local_path(source)))


def redact_source(source: str) -> str:
    """A source as it may be recorded: an URL's user, password and query values replaced by ***."""
    url = urlsplit(source)
    if url.scheme not in ("http", "https"):
        return source
    host = url.hostname or ""
    netloc = f"***@{host}" if (url.username or url.password) else host
    if url.port:
        netloc += f":{url.port}"
    query = urlencode([(key, "***") for key, _ in parse_qsl(url.query, keep_blank_values=True)], safe="*")
    return urlunsplit((url.scheme, netloc, url.path, query, ""))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-80:] or "table"
