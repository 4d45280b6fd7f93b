"""The tabular task kind: a table in, a schema inferred then enforced, a ColumnTransformer Pipeline out.

A schema names every feature column with its kind (numeric or categorical), the categories a
categorical column may take, and the ranges a numeric column must respect when the user declared
them. It is inferred from the first data set, pinned, and every later data set, every served row and
every batch row is checked against it, with errors that name the column and the row.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from model.errors import DataValidationError
from model.params import TabularParams

NUMERIC: Literal["numeric"] = "numeric"
CATEGORICAL: Literal["categorical"] = "categorical"
_NUMERIC_SHARE = 0.9  # a column is numeric when at least this share of its values parse as numbers
_EXAMPLES = ("example:wine",)
# What pandas reads as missing by default, compared case-insensitively after stripping blanks.
MISSING_MARKERS = frozenset(
    m.lower()
    for m in ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
              "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip
MISSING_CATEGORY = "(missing)"  # what a missing categorical cell becomes inside the Pipeline
IMPUTE: Literal["impute"] = "impute"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["numeric", "categorical"]
    categories: list[str] | None = None  # allowed values of a categorical column
    min: float | None = None  # enforced bounds, only when declared in params
    max: float | None = None
    observed_min: float | None = None  # what the first data set held (form hints, not enforced)
    observed_max: float | None = None
    missing_share: float = 0.0  # of the first data set's rows; above 0 the column may be null when served


@dataclass(frozen=True)
class Schema:
    target: str
    classes: list[Any]
    columns: list[Column] = field(default_factory=list)
    missing: Literal["impute", "refuse"] = "refuse"  # models from before the policy have no imputer
    id_columns: list[str] = field(default_factory=list)  # tabular.drop: kept beside batch results
    task_type: Literal["classification", "regression"] = "classification"  # model/regression.py

    @property
    def regression(self) -> bool:
        return self.task_type == "regression"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == NUMERIC]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == CATEGORICAL]

    @property
    def imputes(self) -> bool:
        return self.missing == IMPUTE

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "classes": self.classes,
            "columns": [asdict(c) for c in self.columns],
            "missing": self.missing,
            "id_columns": self.id_columns,
            "task_type": self.task_type,
        }

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> Schema:
        return Schema(
            target=raw["target"],
            classes=list(raw["classes"]),
            columns=[Column(**c) for c in raw["columns"]],
            missing=raw.get("missing", "refuse"),
            id_columns=list(raw.get("id_columns", [])),
            task_type=raw.get("task_type", "classification"),
        )


def with_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing text cells as NaN (JSON and Parquet give None), which is what the Pipeline's imputers look for."""
    return frame.apply(lambda col: col.where(col.notna(), np.nan) if col.dtype == object else col)


def columns_of(rows: list[dict[str, Any]], schema: Schema) -> dict[str, np.ndarray]:
    """Validated rows as one array per column, NaN where a cell is missing: what the compiled graph is
    fed (model/serving.py) without building a DataFrame, which costs more than the forest itself."""
    columns: dict[str, np.ndarray] = {}
    for column in schema.columns:
        name = column.name
        if column.kind == NUMERIC:
            columns[name] = np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)
        else:
            columns[name] = np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=object)
    return columns


def missing_mask(values: pd.Series) -> np.ndarray:
    """Which cells are missing: null, or a marker such as '', NA, N/A, NaN, null or None."""
    text = values.astype(str).str.strip().str.lower()
    return (values.isna() | text.isin(MISSING_MARKERS)).to_numpy()


# -- reading --------------------------------------------------------------------------------------


def read_table(source: str, data: bytes | None = None) -> pd.DataFrame:
    """A CSV or Parquet file from a path, raw bytes (named by `source`), or a bundled example (`example:wine`).

    Nothing here fetches a URL or checks where a path leads: model/sources.py decides what may be read.
    """
    if source in _EXAMPLES:
        return example_wine()
    is_parquet = urlsplit(source).path.lower().endswith((".parquet", ".pq"))
    try:
        if data is not None:
            handle: Any = io.BytesIO(data)
        else:
            path = Path(source)
            if not path.is_file():
                raise DataValidationError(f"data file {source} does not exist")
            handle = path
        if is_parquet:
            return pd.read_parquet(handle)
        return pd.read_csv(handle, dtype=str, keep_default_na=False, skipinitialspace=True)
    except DataValidationError:
        raise
    except pd.errors.ParserError as exc:  # e.g. "Expected 14 fields in line 7, saw 15"
        raise DataValidationError(f"{source} is not a well-formed CSV: {exc}".strip()) from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{source} cannot be read as {'Parquet' if is_parquet else 'CSV'}: {exc}") from exc


def example_wine() -> pd.DataFrame:
    """scikit-learn's wine data (13 numeric measurements, 3 cultivars) plus a categorical `region`.

    The region column is generated here, deterministically, so the example exercises one-hot
    encoding: each cultivar mostly comes from its own region.
    """
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    rng = np.random.default_rng(7)
    regions = np.array(["north", "south", "east"])
    home = frame["target"].to_numpy()
    drawn = np.where(rng.random(len(frame)) < 0.7, home, rng.integers(0, 3, len(frame)))
    frame.insert(len(frame.columns) - 1, "region", regions[drawn])
    frame["cultivar"] = np.array(["barolo", "grignolino", "barbera"])[home]
    return frame.drop(columns=["target"])


# -- schema ---------------------------------------------------------------------------------------


def infer_schema(frame: pd.DataFrame, params: TabularParams, task_type: str = "classification") -> Schema:
    """Column kinds (declared, else inferred), categories and observed ranges of a raw table; the
    classes when `task_type` (resolved by regression.infer_type) is classification."""
    target = params.target
    if target not in frame.columns:
        raise DataValidationError(
            f"the target column '{target}' is not in the data (columns: {_names(list(frame.columns))})"
        )
    unknown = [c for c in [*params.numeric, *params.categorical, *params.drop] if c not in frame.columns]
    if unknown:
        raise DataValidationError(f"params name columns that are not in the data: {unknown}")
    columns = []
    labelled = ~missing_mask(frame[target]) if params.missing == IMPUTE else np.ones(len(frame), dtype=bool)
    for name in frame.columns:
        if name == target or name in params.drop:
            continue
        values = frame[name]
        absent = missing_mask(values)
        share = float(absent[labelled].mean()) if labelled.any() else 0.0
        if params.missing == IMPUTE and share > params.max_missing_share:
            raise DataValidationError(
                f"column '{name}' is missing in {share:.0%} of the rows, more than tabular.max_missing_share="
                f"{params.max_missing_share:g}: list it under tabular.drop, or raise the share to impute it anyway"
            )
        present = values[~absent]
        numbers = pd.to_numeric(present, errors="coerce")
        numeric_share = float(numbers.notna().mean()) if len(present) else 0.0
        declared = params.ranges.get(name)
        is_numeric = name in params.numeric or (name not in params.categorical and numeric_share >= _NUMERIC_SHARE)
        if is_numeric and values.dtype != bool:
            finite = numbers[np.isfinite(numbers)]
            columns.append(
                Column(
                    name=str(name),
                    kind=NUMERIC,
                    min=declared[0] if declared else None,
                    max=declared[1] if declared else None,
                    observed_min=float(finite.min()) if len(finite) else None,
                    observed_max=float(finite.max()) if len(finite) else None,
                    missing_share=round(share, 6),
                )
            )
            continue
        allowed = params.categories.get(name)
        seen = sorted({str(v).strip() for v in present})
        if allowed is None and name not in params.categorical and len(seen) > params.max_categories:
            raise DataValidationError(
                f"column '{name}' has {len(seen)} distinct values, more than max_categories={params.max_categories}: "
                "if it is an identifier, list it under tabular.drop; if it is numeric, under tabular.numeric"
            )
        columns.append(
            Column(
                name=str(name),
                kind=CATEGORICAL,
                categories=[str(c) for c in (allowed or seen)],
                missing_share=round(share, 6),
            )
        )
    if not columns:
        raise DataValidationError("the data has no feature columns besides the target")
    classes = sorted({_label(v) for v in frame[target][labelled] if str(v).strip() != ""}, key=_sort_key)
    return Schema(
        target=target,
        classes=[] if task_type == "regression" else classes,
        columns=columns,
        missing=params.missing,
        id_columns=list(params.drop),
        task_type="regression" if task_type == "regression" else "classification",
    )


def row_number_columns(frame: pd.DataFrame) -> list[str]:
    """Unnamed columns that only number the rows (R's write.csv, pandas' to_csv): never features."""
    found = []
    for name in frame.columns:
        if not re.fullmatch(r"(Unnamed: \d+|rownames|)", str(name)):
            continue
        numbers = pd.to_numeric(frame[name], errors="coerce").to_numpy()
        steps = np.diff(numbers)
        if len(numbers) and not np.isnan(numbers).any() and numbers[0] in (0, 1) and (steps == 1).all():
            found.append(str(name))
    return found


def drop_unlabelled(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, int]:
    """Rows whose target is missing cannot be learnt from: dropped (and counted) when imputing."""
    if not schema.imputes or schema.target not in frame.columns:
        return frame, 0
    unlabelled = missing_mask(frame[schema.target])
    return frame[~unlabelled], int(unlabelled.sum())  # the index keeps each row's place in the file


def enforce_schema(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, np.ndarray]:
    """Typed features and labels from a raw table, or an error naming the first bad column and row.

    Rows are numbered from 1 as in a spreadsheet without its header (file line = row + 1).
    """
    if schema.target not in frame.columns:
        raise DataValidationError(f"the target column '{schema.target}' is missing")
    X = enforce_features(frame, schema)
    labels = frame[schema.target]
    empty = np.flatnonzero(missing_mask(labels))
    if empty.size:
        raise _row_error(schema.target, int(frame.index[empty[0]]), "is missing (it is the target)", empty.size)
    if schema.regression:
        from model.regression import target_values

        return X, target_values(labels, schema.target)
    y = np.array([_label(v) for v in labels], dtype=object)
    unknown = np.flatnonzero(~np.isin(y.astype(str), [str(c) for c in schema.classes]))
    if unknown.size:
        raise _row_error(
            schema.target,
            int(frame.index[unknown[0]]),
            f"is {_shown(y[unknown[0]])}, not one of the classes {schema.classes}",
            unknown.size,
        )
    if all(isinstance(c, int) for c in schema.classes):
        y = y.astype(np.int64)
    return X, y


def enforce_features(
    frame: pd.DataFrame, schema: Schema, strict_categories: bool = True, training: bool = True
) -> pd.DataFrame:
    """The schema's feature columns, typed, in order; other columns (a target, an id) are ignored.

    Missing cells become NaN for the Pipeline's imputers when the schema imputes: in any column while
    training, and when scoring only in columns that were missing in the training data. Scoring passes
    strict_categories=False and training=False: the one-hot encoder ignores a category it never saw.
    """
    absent_columns = [name for name in schema.names if name not in frame.columns]
    if absent_columns:
        raise DataValidationError(f"columns {absent_columns} are missing (the schema expects {schema.names})")
    if len(frame) == 0:
        raise DataValidationError("the data has a header but no rows")
    out: dict[str, Any] = {}
    for column in schema.columns:
        values = frame[column.name]
        text = values.astype(str).str.strip()
        absent = missing_mask(values)
        allowed_missing = schema.imputes and (training or column.missing_share > 0)
        empty = np.flatnonzero(absent)
        if empty.size and not allowed_missing:
            advice = (
                "this column was never missing in the training data; fill it in"
                if schema.imputes
                else "fill it in or drop the row (or set tabular.missing: impute)"
            )
            raise _row_error(column.name, int(frame.index[empty[0]]), f"is missing; {advice}", empty.size)
        if column.kind == NUMERIC:
            numbers = pd.Series(_numbers(values, absent), index=values.index)
            bad = np.flatnonzero(~np.isfinite(numbers.to_numpy()) & ~absent)
            if bad.size:
                raise _row_error(
                    column.name, int(frame.index[bad[0]]), f"is {_shown(text.iloc[bad[0]])}, not a number", bad.size
                )
            for bound, outside in (
                (column.min, numbers < (column.min or 0)),
                (column.max, numbers > (column.max or 0)),
            ):
                rows = np.flatnonzero(outside.to_numpy()) if bound is not None else np.empty(0, dtype=int)
                if rows.size:
                    raise _row_error(
                        column.name,
                        int(frame.index[rows[0]]),
                        f"is {numbers.iloc[rows[0]]:g}, outside the declared range [{column.min}, {column.max}]",
                        rows.size,
                    )
            out[column.name] = numbers.to_numpy()
        else:
            allowed = set(column.categories or [])
            unknown = ~text.isin(allowed).to_numpy() & ~absent
            bad = np.flatnonzero(unknown) if strict_categories else np.empty(0, dtype=int)
            if bad.size:
                raise _row_error(
                    column.name,
                    int(frame.index[bad[0]]),
                    f"is {_shown(text.iloc[bad[0]])}, not one of the allowed categories {sorted(allowed)} "
                    "(add it under tabular.categories in params.yaml, or remove the pinned schema to re-infer it: "
                    + UNPIN
                    + ")",
                    bad.size,
                )
            categories = text.to_numpy(dtype=object)
            categories[absent] = np.nan
            out[column.name] = categories
    return pd.DataFrame(out, columns=schema.names)


def _numbers(values: pd.Series, absent: np.ndarray) -> np.ndarray:
    """A column as float64: NaN where a cell is missing or is not a number.

    pyarrow's cast parses a million cells in 20 ms where pandas' to_numeric took 370; a cell it
    cannot parse (a typo, a space) sends the column to to_numeric, which makes each such cell NaN.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        cells = pc.if_else(pa.array(absent), None, pa.array(values, from_pandas=True))
        return np.asarray(pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowException, TypeError, ValueError):
        return pd.to_numeric(values.where(~absent), errors="coerce").astype(np.float64).to_numpy()


# how a user drops a pin (model/store.py keeps it in model_events, one document per source and target)
UNPIN = "delete the model_events document whose _id is 'schema-pin:<source>--<target>'"


def check_compatible(pinned: Schema, inferred: Schema) -> None:
    """A new data set must carry the pinned columns with the same kinds; new classes are refused."""
    kinds = {c.name: c.kind for c in inferred.columns}
    problems = []
    for column in pinned.columns:
        if column.name not in kinds:
            problems.append(f"column '{column.name}' is missing")
        elif kinds[column.name] != column.kind:
            problems.append(f"column '{column.name}' was {column.kind} and is now {kinds[column.name]}")
    extra = [name for name in kinds if name not in pinned.names]
    if extra:
        problems.append(f"new columns {extra}")
    if pinned.target != inferred.target:
        problems.append(f"the target was '{pinned.target}' and is now '{inferred.target}'")
    if problems:
        raise DataValidationError(
            "the data no longer matches its pinned schema: "
            + "; ".join(problems)
            + f" (to accept the new shape, remove the pinned schema: {UNPIN})"  # fmt: skip
        )


def validate_table(
    X: pd.DataFrame, y: np.ndarray, schema: Schema, min_per_class: int, max_imbalance: float
) -> dict[str, Any]:
    """Class counts and balance of a typed table, plus its duplicates and conflicting rows (a numeric
    target: its range, and duplicates; identical rows with different values are noise, not conflict)."""
    if schema.regression:
        keyed = X.astype(object).where(X.notna(), "<missing>").astype(str).agg("|".join, axis=1)
        if len(y) < 2 * min_per_class:
            raise DataValidationError(f"{len(y)} rows are too few to learn a number from and check it")
        return {
            "rows": len(X),
            "target": {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean())},
            "duplicates": int(len(X) - keyed.nunique()),
            "columns": {c.name: c.kind for c in schema.columns},
        }
    counts = {str(c): int(np.sum(y.astype(str) == str(c))) for c in schema.classes}
    short = [c for c, n in counts.items() if n < min_per_class]
    if short:
        raise DataValidationError(f"classes {short} have fewer than {min_per_class} rows (counts: {counts})")
    imbalance = max(counts.values()) / min(counts.values())
    if imbalance > max_imbalance:
        raise DataValidationError(f"class imbalance {imbalance:.1f} exceeds {max_imbalance:g} (counts: {counts})")
    keyed = X.astype(object).where(X.notna(), "<missing>").astype(str).agg("|".join, axis=1)
    labels_per_row = pd.Series(y.astype(str)).groupby(keyed.to_numpy()).nunique()
    conflicting = int((labels_per_row > 1).sum())
    if conflicting:
        raise DataValidationError(f"{conflicting} identical feature rows carry different labels")
    return {
        "rows": len(X),
        "class_counts": counts,
        "duplicates": int(len(X) - keyed.nunique()),
        "imbalance": round(imbalance, 3),
        "columns": {c.name: c.kind for c in schema.columns},
    }


def table_hash(X: pd.DataFrame, y: np.ndarray) -> str:
    """SHA-256 of the typed table: column names, then every value, then the labels."""
    digest = hashlib.sha256("|".join(X.columns).encode())
    digest.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    digest.update("\x00".join(str(v) for v in y).encode())
    return digest.hexdigest()


# -- training and drift ---------------------------------------------------------------------------


def build_preprocessor(schema: Schema) -> ColumnTransformer:
    """Scaling for numeric columns, one-hot for categorical ones (unknown categories ignored).

    When the schema imputes, missing numbers become the column's median, with an indicator column for
    each column that had missing values in training, and a missing category becomes MISSING_CATEGORY,
    a category of its own. Imputing inside the Pipeline keeps training and serving the same. (The
    indicators are a transformer of their own, not SimpleImputer's add_indicator, which skl2onnx
    cannot compile: model/serving.py.)
    """
    transformers: list[tuple[str, Any, list[str]]] = []
    categories = [c.categories or [] for c in schema.columns if c.kind == CATEGORICAL]
    if schema.numeric:
        numeric: Any = StandardScaler()
        if schema.imputes:
            numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", numeric)])
        transformers.append(("numeric", numeric, schema.numeric))
        gaps = [c.name for c in schema.columns if c.kind == NUMERIC and c.missing_share > 0]
        if schema.imputes and gaps:
            transformers.append(("missing", MissingIndicator(features="all"), gaps))
    if schema.categorical:
        if schema.imputes:
            encoder = OneHotEncoder(categories=[[*c, MISSING_CATEGORY] for c in categories], handle_unknown="ignore")
            fill = SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)
            transformers.append(("categorical", Pipeline([("impute", fill), ("encode", encoder)]), schema.categorical))
        else:
            encoder = OneHotEncoder(categories=categories, handle_unknown="ignore")
            transformers.append(("categorical", encoder, schema.categorical))
    return ColumnTransformer(transformers)


def with_preprocessor(pipeline: Pipeline, schema: Schema) -> Pipeline:
    """The configured Pipeline with its scaler replaced by the schema's ColumnTransformer."""
    return Pipeline([("prepare", build_preprocessor(schema)), *pipeline.steps[1:]])


def reference_profile(X: pd.DataFrame, y: np.ndarray, schema: Schema, bins: int) -> dict[str, Any]:
    """Per column: quantile-bin histogram (numeric) or category counts (categorical); the label counts."""
    columns = []
    for column in schema.columns:
        values = X[column.name]
        missing = int(values.isna().sum())
        if column.kind == NUMERIC:
            edges, counts = quantile_histogram(values.dropna().to_numpy(dtype=np.float64), bins)
            columns.append(
                {
                    "name": column.name,
                    "kind": NUMERIC,
                    "bin_edges": edges.tolist(),
                    "counts": counts.tolist(),
                    "missing": missing,  # drift watches the missing share as one more bin
                }
            )
        else:
            categories = list(column.categories or [])
            shares = values.value_counts()
            columns.append(
                {
                    "name": column.name,
                    "kind": CATEGORICAL,
                    "categories": categories,
                    "counts": [int(shares.get(c, 0)) for c in categories],
                    "missing": missing,
                }
            )
    profile = {
        "kind": "tabular",
        "columns": columns,
        "labels": schema.classes,
        "label_counts": [int(np.sum(y.astype(str) == str(c))) for c in schema.classes],
        "rows": len(X),
    }
    if schema.regression:
        from model.regression import target_profile

        profile["target"] = target_profile(np.asarray(y, dtype=np.float64), bins)
    return profile


def quantile_histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bin edges of `values` (at least one bin, even for a constant) and the counts in them."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1))) if values.size else np.zeros(1)
    if edges.size < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges, np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0]


def reference_counts(column: dict[str, Any]) -> np.ndarray:
    """A profile column's counts in the layout of current_counts."""
    counts = [*column["counts"], *([0] if column["kind"] == CATEGORICAL else [])]
    if "missing" in column:
        counts.append(column["missing"])
    return np.asarray(counts, dtype=np.float64)


def current_counts(column: dict[str, Any], values: list[Any]) -> np.ndarray:
    """Counts of served values over a profile column's bins (numeric) or categories (plus one for unseen),
    then missing values (null), when the profile counts them."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    missing = [len(values) - len(present)] if "missing" in column else []
    if column["kind"] == NUMERIC:
        edges = np.asarray(column["bin_edges"], dtype=np.float64)
        numbers = np.asarray([v for v in present if isinstance(v, int | float) and math.isfinite(v)], dtype=np.float64)
        return np.asarray([*np.histogram(np.clip(numbers, edges[0], edges[-1]), bins=edges)[0], *missing])
    categories = column["categories"]
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1)
    for value in present:
        counts[index.get(str(value), len(categories))] += 1
    return np.asarray([*counts, *missing])


# -- helpers --------------------------------------------------------------------------------------


def _label(value: Any) -> Any:
    """Class labels stay integers when they look like integers, else strings."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else text


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def _shown(value: Any, width: int = 40) -> str:
    """A cell as an error message quotes it: enough to find it, never a whole line of someone's file."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _names(names: list[Any], most: int = 30) -> str:
    shown = [_shown(str(n)) for n in names[:most]]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")


def _row_error(column: str, index: int, problem: str, count: int) -> DataValidationError:
    """`index`: the row's place in the file (0 is the first row under the header)."""
    more = f" ({count} rows have this problem)" if count > 1 else ""
    return DataValidationError(f"row {index + 1} (file line {index + 2}), column '{column}': value {problem}{more}")
