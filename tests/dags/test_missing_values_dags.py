"""A public table with missing values through the lifecycle, with no hand cleaning (issue #20, part 1).

Palmer penguins as its package ships it (`NA` markers in 5 columns): ml_pipeline ingests, trains and
promotes it with the default gate; the app answers rows with nulls where training had missing cells;
the training file itself is scored as a batch. DAGs run with dag.test() on the session's real servers.
"""

from __future__ import annotations

import importlib.resources
import io

import pandas as pd
import pytest

from model.registry import CHAMPION, Registry
from tests.conftest import registry_config_for
from tests.dags.test_tabular_and_batches import batch_app, params_file, table_env

MODEL = "penguins-dags"
DB = "penguins_test"
PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"


@pytest.fixture(scope="module")
def penguins_env(servers, tmp_path_factory):
    root = tmp_path_factory.mktemp("penguins")
    (root / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    params = params_file(
        root / "params.yaml",
        task="tabular",
        tabular={"source": "penguins.csv", "target": "species"},
        train={"estimator": "random_forest", "hyperparameters": {"n_estimators": 50}},
    )
    with pytest.MonkeyPatch.context() as patch:
        for key, value in table_env(root, servers, MODEL, DB, params).items():
            patch.setenv(key, value)
        yield root


@pytest.fixture(scope="module")
def penguins_app(dagbag, penguins_env, servers, tmp_path_factory):
    run = dagbag.get_dag("ml_pipeline").test()
    assert run.state == "success"
    champion = Registry(registry_config_for(servers, MODEL)).by_alias(CHAMPION)
    assert champion is not None and champion.tags["validation_outcome"] == "promoted"
    with batch_app(servers, tmp_path_factory.mktemp("app"), MODEL, DB) as application:
        yield application


ROW = {"island": "Biscoe", "bill_length_mm": 46.5, "bill_depth_mm": 15.0, "flipper_length_mm": 218,
       "body_mass_g": 5200, "sex": "male", "year": 2008}  # fmt: skip


def test_rows_with_nulls_are_served_where_training_had_missing_cells(penguins_app, mongo_client):
    serving = penguins_app.test_client().get("/model-info").get_json()["serving"]
    assert serving["engine"] == "onnxruntime", serving  # a forest behind imputers, compiled and checked
    client = penguins_app.test_client()
    both = client.post("/predict", json={"instances": [ROW, {**ROW, "sex": None, "bill_length_mm": None}]})
    assert both.status_code == 200, both.get_json()
    assert [p["label"] for p in both.get_json()["predictions"]] == ["Gentoo", "Gentoo"]
    assert penguins_app.extensions["prediction_log"].flush()
    stored = mongo_client[DB].predictions.find_one({"_id": both.get_json()["predictions"][1]["id"]})
    assert stored["features"]["sex"] is None, "a null is logged as null"

    never_missing = client.post("/predict", json={"instances": [{**ROW, "island": None}]})
    assert never_missing.status_code == 422 and never_missing.get_json()["field"] == "instances[0].island"
    assert "never missing" in never_missing.get_json()["message"]
    absent = client.post("/predict", json={"instances": [{k: v for k, v in ROW.items() if k != "sex"}]})
    assert absent.status_code == 422 and absent.get_json()["field"] == "instances[0].sex"


def test_the_training_file_itself_is_scored_as_a_batch(penguins_app, dagbag, mongo_client):
    client = penguins_app.test_client()
    response = client.post("/batches", data={"file": (io.BytesIO(PENGUINS.read_bytes()), "penguins.csv")})
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]
    run = dagbag.get_dag("score_batch").test(run_conf=penguins_app.extensions["triggered"][-1])
    assert run.state == "success"
    status = client.get(f"/batches/{batch_id}").get_json()
    assert status["status"] == "succeeded" and status["rows"] == 344, status
    result = pd.read_csv(io.BytesIO(client.get(f"/batches/{batch_id}/result").data))
    truth = pd.read_csv(io.BytesIO(PENGUINS.read_bytes()))["species"]
    assert (result["label"] == truth).mean() > 0.95, "scored with the target column present and ignored"
