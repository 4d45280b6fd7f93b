"""Tables with missing values, as users bring them (issue #20, part 1).

Two public tables that we did not write, read from the packages that ship them (offline):
- Palmer penguins (palmerpenguins): 344 rows, `NA` markers in 5 columns, a `year` column;
- Vega's cars (vega_datasets): 406 rows, nulls in two numeric columns, written here as the CSV a user
  exports (empty cells, a row-number column first).
"""

from __future__ import annotations

import importlib.resources
import json

import numpy as np
import pandas as pd
import pytest

from model import lifecycle, serving, tabular
from model.errors import DataValidationError
from model.evaluate import evaluate
from model.kinds import Limits
from model.kinds.table import KIND as TABLE
from model.params import Params, TabularParams, TrainParams
from model.snapshot import read_snapshot
from model.sources import SourcePolicy
from model.train import build_pipeline, train

PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
CARS = importlib.resources.files("vega_datasets") / "_data" / "cars.json"


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    cars = pd.DataFrame(json.loads(CARS.read_text()))
    cars.to_csv(tmp_path / "cars.csv", index_label="")  # R and pandas exports: an unnamed row-number column
    return tmp_path


def ingest(sources, db, **tabular_params):
    params = Params(task="tabular", tabular=TabularParams(**tabular_params))
    snapshot = lifecycle.ingest(params, sources / "data", db, SourcePolicy(sources))
    return read_snapshot(sources / "data" / "snapshots" / snapshot["hash"])


def fit(snap, schema):
    pipeline = tabular.with_preprocessor(build_pipeline(TrainParams(estimator="random_forest"), 42), schema)
    return train(pipeline, snap.train.X, snap.train.y)


def test_na_markers_are_missing_values_imputed_inside_the_pipeline(sources, db):
    snap = ingest(sources, db, source="penguins.csv", target="species")
    schema = tabular.Schema.from_dict(snap.schema)
    shares = {c.name: c.missing_share for c in schema.columns}
    assert shares["sex"] == pytest.approx(11 / 344, abs=1e-4) and shares["bill_length_mm"] > 0
    assert shares["island"] == 0 and schema.imputes
    assert snap.manifest["validation"]["missing_cells"]["sex"] > 0
    fitted = fit(snap, schema)
    assert evaluate(fitted, snap.holdout.X, snap.holdout.y, schema.classes).accuracy >= 0.9
    row = tabular.with_nan(pd.DataFrame([{c: None for c in schema.names} | {"island": "Biscoe", "year": 2008}]))
    assert fitted.predict_proba(row).sum() == pytest.approx(1.0), "an all-missing row is imputed, not refused"


def test_the_imputing_pipeline_compiles_and_agrees_on_missing_cells(sources, db):
    """Issue #20 part 3: a forest behind the imputers, served by onnxruntime, gives scikit-learn's numbers."""
    snap = ingest(sources, db, source="penguins.csv", target="species")
    schema = tabular.Schema.from_dict(snap.schema)
    fitted = fit(snap, schema)
    compiled = serving.session(serving.compile_pipeline(fitted, schema.categorical))
    probes = TABLE.probes(snap.holdout.X[:5], schema)
    assert probes.isna().any().sum() >= 3, "the probes empty cells in every column that may be missing"
    assert serving.check(compiled, fitted, probes) <= serving.TOLERANCE
    assert serving.check(compiled, fitted, snap.holdout.X) <= serving.TOLERANCE


def test_empty_cells_and_a_row_number_column_need_no_hand_cleaning(sources, db):
    snap = ingest(sources, db, source="cars.csv", target="Origin", drop=["Name"])
    schema = tabular.Schema.from_dict(snap.schema)
    assert snap.manifest["validation"]["dropped_row_number_columns"] == ["Unnamed: 0"]
    assert schema.names == [c for c in json.loads(CARS.read_text())[0] if c not in ("Name", "Origin")]
    assert {c.name for c in schema.columns if c.missing_share > 0} == {"Miles_per_Gallon", "Horsepower"}
    accuracy = evaluate(fit(snap, schema), snap.holdout.X, snap.holdout.y, schema.classes).accuracy
    baseline = max(np.mean(snap.holdout.y == c) for c in schema.classes)
    assert accuracy > baseline + 0.1, (accuracy, baseline)


def test_rows_whose_target_is_missing_are_dropped_and_counted(sources, db):
    snap = ingest(sources, db, source="penguins.csv", target="sex")
    assert snap.manifest["validation"]["dropped_missing_target"] == 11
    assert len(snap.train) + len(snap.holdout) == 344 - 11
    assert sorted(tabular.Schema.from_dict(snap.schema).classes) == ["female", "male"]


def test_strict_mode_refuses_missing_values_as_before(sources, db):
    with pytest.raises(DataValidationError, match=r"row 4 \(file line 5\), column 'bill_length_mm': value is missing"):
        ingest(sources, db, source="penguins.csv", target="species", missing="refuse")


def test_a_column_missing_too_often_is_refused_with_advice(sources, db):
    frame = pd.read_csv(sources / "penguins.csv").assign(notes=[None] * 300 + ["x"] * 44)
    frame.to_csv(sources / "sparse.csv", index=False)
    with pytest.raises(DataValidationError, match=r"'notes' is missing in 87% of the rows.*tabular.drop"):
        ingest(sources, db, source="sparse.csv", target="species")
    assert ingest(sources, db, source="sparse.csv", target="species", max_missing_share=0.9).schema is not None


def test_served_rows_may_be_null_only_where_training_data_was_missing(sources, db):
    snap = ingest(sources, db, source="penguins.csv", target="species")
    schema = tabular.Schema.from_dict(snap.schema)
    frame = pd.read_csv(sources / "penguins.csv", dtype=str, keep_default_na=False)
    batch = TABLE.read_batch(frame.to_csv(index=False).encode(), "csv", schema, Limits())  # the training file itself
    assert len(batch.rows) == 344 and batch.rows[3]["bill_length_mm"] is None, "the target column is ignored"
    frame.loc[0, "island"] = ""
    with pytest.raises(DataValidationError, match="column 'island': value is missing; this column was never missing"):
        TABLE.read_batch(frame.to_csv(index=False).encode(), "csv", schema, Limits())


def test_a_batch_keeps_the_row_id_of_the_file(sources, db):
    snap = ingest(sources, db, source="cars.csv", target="Origin", drop=["Name"])
    schema = tabular.Schema.from_dict(snap.schema)
    batch = TABLE.read_batch((sources / "cars.csv").read_bytes(), "csv", schema, Limits())
    assert batch.keys[:2] == ["chevrolet chevelle malibu", "buick skylark 320"], "the id column names the rows"


def test_drift_watches_the_missing_share(sources, db):
    snap = ingest(sources, db, source="penguins.csv", target="species")
    rows = snap.holdout.X.to_dict(orient="records")
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in rows]
    names = [c["name"] for c in snap.profile["columns"]]
    like_training = dict(zip(names, TABLE.drift(snap.profile, [{"features": r} for r in rows])[0], strict=True))
    emptied = [row | {"body_mass_g": None} for row in rows]
    drifted = dict(zip(names, TABLE.drift(snap.profile, [{"features": r} for r in emptied])[0], strict=True))
    assert drifted["body_mass_g"] > 0.2 > like_training["body_mass_g"]
