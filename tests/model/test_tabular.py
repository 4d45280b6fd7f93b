"""The tabular task kind: schema inference and enforcement, the ColumnTransformer Pipeline, drift per column."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model import lifecycle, tabular
from model.batch import prediction_ids
from model.data import Dataset, split
from model.errors import DataValidationError
from model.evaluate import evaluate
from model.kinds import Limits
from model.kinds.digits import KIND as DIGITS
from model.kinds.table import KIND as TABLE
from model.monitoring import ALERT, OK, drift_check
from model.params import MonitoringParams, Params, TabularParams, TrainParams
from model.snapshot import Snapshot, read_snapshot
from model.sources import SourcePolicy
from model.train import build_pipeline, train

PARAMS = TabularParams()


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    return tabular.example_wine()


@pytest.fixture(scope="module")
def schema(wine) -> tabular.Schema:
    return tabular.infer_schema(wine, PARAMS)


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_schema_is_inferred_from_the_values(schema):
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["alcohol"] == "numeric" and kinds["region"] == "categorical"
    assert "cultivar" not in kinds, "the target is not a feature"
    assert schema.classes == ["barbera", "barolo", "grignolino"]
    assert next(c for c in schema.columns if c.name == "region").categories == ["east", "north", "south"]


def test_declared_kinds_and_dropped_columns_win(wine):
    params = TabularParams(categorical=["magnesium"], drop=["proline"])
    schema = tabular.infer_schema(wine, params)
    assert "proline" not in schema.names
    assert next(c for c in schema.columns if c.name == "magnesium").kind == "categorical"


def test_an_identifier_column_is_refused_with_advice(wine):
    frame = wine.assign(customer=[f"c{i}" for i in range(len(wine))])
    with pytest.raises(DataValidationError, match="'customer' has 178 distinct values.*tabular.drop"):
        tabular.infer_schema(frame, PARAMS)


def raw(wine: pd.DataFrame) -> pd.DataFrame:
    """The table as read from a CSV: every value a string."""
    return tabular.read_table("upload.csv", data=csv(wine))


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("alcohol", "abc", r"row 17 \(file line 18\), column 'alcohol': value is 'abc', not a number"),
        ("region", "west", r"row 17 \(file line 18\), column 'region': value is 'west', not one of the allowed"),
        ("cultivar", "merlot", r"row 17 \(file line 18\), column 'cultivar': value is 'merlot', not one of"),
    ],
)
def test_a_bad_value_is_named_by_column_and_row(wine, schema, column, value, expected):
    frame = raw(wine)
    frame.loc[16, column] = value
    with pytest.raises(DataValidationError, match=expected):
        tabular.enforce_schema(frame, schema)


def test_declared_ranges_are_enforced(wine):
    schema = tabular.infer_schema(wine, TabularParams(ranges={"alcohol": (11.0, 14.0)}))
    with pytest.raises(DataValidationError, match=r"column 'alcohol': value is 14.2\d*, outside the declared range"):
        tabular.enforce_schema(raw(wine), schema)


def test_a_malformed_csv_names_its_line():
    data = b"a,b,label\n1,2,x\n3,4,y\n5,6,7,8\n"
    with pytest.raises(DataValidationError, match="line 4"):
        tabular.read_table("upload.csv", data=data)


def test_pinned_schema_refuses_a_changed_table(schema, wine):
    changed = tabular.infer_schema(wine.drop(columns=["hue"]).assign(extra=1.0), PARAMS)
    with pytest.raises(DataValidationError, match="'hue' is missing; new columns \\['extra'\\]"):
        tabular.check_compatible(schema, changed)


def test_pipeline_one_hot_encodes_and_ignores_unknown_categories(wine, schema):
    X, y = tabular.enforce_schema(raw(wine), schema)
    train_set, holdout = split(Dataset(X=X, y=y), 0.25, 42)
    pipeline = tabular.with_preprocessor(build_pipeline(TrainParams(estimator="logistic_regression"), 42), schema)
    fitted = train(pipeline, train_set.X, train_set.y)
    assert evaluate(fitted, holdout.X, holdout.y, schema.classes).accuracy >= 0.9
    snap = Snapshot(
        path=Path("."), hash="h", train=train_set, holdout=holdout, profile={}, manifest={}, schema=schema.to_dict()
    )
    checks = TABLE.behaviour(fitted, snap, Params())
    assert checks == {"predicts_example": True, "handles_unknown_categories": True}


def test_ingest_pins_the_schema_and_enforces_it_next_time(tmp_path, wine, db):
    source = tmp_path / "wine.csv"
    source.write_bytes(csv(wine))
    params = Params(task="tabular", tabular=TabularParams(source=str(source)))
    sources = SourcePolicy(tmp_path)
    first = lifecycle.ingest(params, tmp_path / "data", db, sources)
    snapshot = read_snapshot(tmp_path / "data" / "snapshots" / first["hash"])
    assert snapshot.schema is not None and snapshot.labels == ["barbera", "barolo", "grignolino"]
    assert isinstance(snapshot.train.X, pd.DataFrame) and len(snapshot.train) + len(snapshot.holdout) == 178
    again = lifecycle.ingest(params, tmp_path / "data", db, sources)
    assert again["hash"] == first["hash"], "same content, same hash"
    source.write_bytes(csv(wine.assign(region=wine["region"].replace("east", "west"))))
    with pytest.raises(DataValidationError, match="'west', not one of the allowed categories"):
        lifecycle.ingest(params, tmp_path / "data", db, sources)
    pinned = db.model_events.find_one({"kind": "schema_pinned"})
    assert pinned["schema"]["target"] == "cultivar" and first["hash"]
    # another host (its own, empty data directory) is held to the same pin
    with pytest.raises(DataValidationError, match="'west', not one of the allowed categories"):
        lifecycle.ingest(params, tmp_path / "another-host", db, sources)


def test_drift_per_column_includes_category_shares(wine, schema):
    X, y = tabular.enforce_schema(raw(wine), schema)
    profile = tabular.reference_profile(X, y, schema, bins=5)
    rows = X.to_dict(orient="records")
    params = MonitoringParams(min_predictions_for_drift=50)
    same = drift_check(
        profile, TABLE.drift(profile, [{"features": r} for r in rows]), list(y), [0.9] * len(rows), params
    )
    assert same["status"] == OK, same["message"]
    assert same["features"][-1] == "region" and len(same["psi"]) == len(schema.columns)
    shifted = [{**row, "region": "south"} for row in rows]
    result = drift_check(
        profile, TABLE.drift(profile, [{"features": r} for r in shifted]), list(y), [0.9] * len(rows), params
    )
    assert result["status"] == ALERT and "on region" in result["message"], result["message"]


def test_batch_inputs(wine, schema):
    batch = TABLE.read_batch(csv(wine.drop(columns=["cultivar"]).assign(region="west")), "csv", schema, Limits())
    assert len(batch.rows) == 178 and batch.rows[0]["region"] == "west", "unseen categories are scored, not refused"
    assert batch.rows[-1] == batch.rows[170:178][-1] == batch.rows[177] and batch.rows[5:5] == []
    assert batch.rows[1]["alcohol"] == wine["alcohol"][1], "rows are made a slice at a time, the same either way"
    at = datetime.now(UTC)
    assert prediction_ids("b1", at, 3) == prediction_ids("b1", at, 3) != prediction_ids("b2", at, 3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("notes.txt", "not an image")
    with pytest.raises(DataValidationError, match="holds no images"):
        DIGITS.read_batch(
            buf.getvalue(), "zip", None, Limits(max_batch_images=10, max_image_bytes=1000, max_pixels=1000)
        )
    assert np.asarray(batch.X["alcohol"]).dtype == np.float64


@pytest.mark.parametrize(
    ("source", "recorded"),
    [
        (
            "https://alice:s3cret@data.example.org/t.csv?token=abc&v=2",
            "https://***@data.example.org/t.csv?token=***&v=***",
        ),
        ("https://data.example.org:8443/t.csv", "https://data.example.org:8443/t.csv"),
        ("var/data/t.csv", "var/data/t.csv"),
        ("example:wine", "example:wine"),
    ],
)
def test_a_token_in_a_source_url_is_never_recorded(source, recorded):
    from model.kinds.table import redact_source

    assert redact_source(source) == recorded


def test_a_schema_pinned_in_a_file_by_an_older_release_moves_into_mongodb(tmp_path, wine, db):
    """Pins used to be DATA_DIR/schemas/<source>--<target>.json: the first ingest after the upgrade keeps it."""
    source = tmp_path / "wine.csv"
    source.write_bytes(csv(wine))
    params = Params(task="tabular", tabular=TabularParams(source=str(source)))
    sources = SourcePolicy(tmp_path)
    lifecycle.ingest(params, tmp_path / "old", db, sources)
    pinned = db.model_events.find_one({"kind": "schema_pinned"})
    legacy = tmp_path / "data" / "schemas" / f"{pinned['_id'].removeprefix('schema-pin:')}.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps(pinned["schema"]))
    db.model_events.delete_many({})  # MongoDB as an upgraded install finds it: no pin yet
    source.write_bytes(csv(wine.assign(region=wine["region"].replace("east", "west"))))
    with pytest.raises(DataValidationError, match="'west', not one of the allowed categories"):
        lifecycle.ingest(params, tmp_path / "data", db, sources)
    assert db.model_events.find_one({"kind": "schema_pinned"})["schema"] == pinned["schema"]


@pytest.mark.parametrize(
    "cells",
    [
        ["1.5", "2", "-3e2", "NA", "", "7."],  # what a CSV holds, read as text
        ["1.5", "abc", "2", " 4 ", "NA"],  # cells pyarrow cannot parse: pandas decides
        [1, 2.5, None, 4],  # a Parquet column, already numbers
        [True, False, True],
        ["NA", "", "null"],  # all missing
    ],
)
def test_numeric_cells_parse_as_pandas_parses_them(cells):
    """The fast parse (pyarrow) and its fallback agree with pandas' to_numeric, cell for cell."""
    from model.tabular import _numbers, missing_mask

    dtype = "str" if all(isinstance(c, str) for c in cells) else None
    values = pd.Series(cells, dtype=dtype)
    absent = missing_mask(values)
    expected = pd.to_numeric(values.where(~absent), errors="coerce").astype(np.float64).to_numpy()
    assert np.array_equal(_numbers(values, absent), expected, equal_nan=True)
