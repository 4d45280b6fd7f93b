"""Numeric targets (issue #23): the prediction type inferred, regressors trained, gated and compiled.

scikit-learn's diabetes table (bundled with it: 442 rows, 10 numeric features, a numeric target) is
written as the CSV a user brings; Palmer penguins gives a classification and a regression target in
one table. The registry test runs the lifecycle's own steps against the session's MLflow and MongoDB.
"""

from __future__ import annotations

import importlib.resources

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from app.model_manager import _load_local
from model import lifecycle, regression, serving, tabular
from model.errors import DataValidationError
from model.params import Params, PromotionParams, TabularParams, TrainParams
from model.promotion import decide_promotion
from model.registry import CHAMPION, connect
from model.snapshot import read_snapshot
from model.sources import SourcePolicy
from model.train import build_pipeline, train
from tests.conftest import registry_config_for

PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"


@pytest.fixture
def sources(tmp_path):
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame.insert(0, "patient", [f"p{i:03d}" for i in range(len(frame))])
    frame.loc[[3, 50, 400], "progression"] = np.nan  # a few unlabelled rows, as real tables have
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    (tmp_path / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    return tmp_path


def snapshot(sources, **tabular_params):
    params = Params(task="tabular", tabular=TabularParams(**tabular_params))
    made = lifecycle.ingest(params, sources / "data", None, SourcePolicy(sources))
    return read_snapshot(sources / "data" / "snapshots" / made["hash"])


def test_auto_tells_a_number_from_a_class():
    penguins = pd.read_csv(PENGUINS)
    assert regression.infer_type(penguins["species"], "auto")[0] == "classification"
    assert regression.infer_type(penguins["year"], "auto")[0] == "classification"  # 3 whole values
    kind, why = regression.infer_type(penguins["body_mass_g"].dropna(), "auto")
    assert kind == "regression" and "distinct values" in why
    assert regression.infer_type(penguins["bill_length_mm"].dropna(), "auto") == (
        "regression",
        "auto: the target is numeric and has fractional values",
    )
    assert regression.infer_type(penguins["body_mass_g"], "classification")[0] == "classification"


def test_a_numeric_table_is_snapshotted_as_regression_with_unlabelled_rows_dropped(sources):
    snap = snapshot(sources, source="diabetes.csv", target="progression", drop=["patient"], task_type="auto")
    schema = tabular.Schema.from_dict(snap.schema)
    assert schema.regression and schema.classes == [] and len(schema.columns) == 10
    assert snap.manifest["validation"]["dropped_missing_target"] == 3
    assert snap.manifest["validation"]["task_type"]["type"] == "regression"
    assert len(snap.train) + len(snap.holdout) == 442 - 3
    assert snap.train.y.dtype == np.float64 and snap.profile["target"]["counts"]


def test_a_regression_target_that_is_not_a_number_names_the_rows(sources):
    frame = pd.read_csv(sources / "diabetes.csv")
    frame["progression"] = frame["progression"].astype(object)
    frame.loc[[7, 9], "progression"] = "high"
    frame.to_csv(sources / "bad.csv", index=False)
    with pytest.raises(DataValidationError, match=r"row 8 \(file line 9\), column 'progression': value 'high' is not"):
        snapshot(sources, source="bad.csv", target="progression", drop=["patient"], task_type="regression")


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting", "ridge", "knn", "mlp"])
def test_every_regressor_trains_beats_the_mean_and_compiles(sources, estimator):
    snap = snapshot(sources, source="diabetes.csv", target="progression", drop=["patient"], task_type="regression")
    schema = tabular.Schema.from_dict(snap.schema)
    hyper = {"random_forest": {"n_estimators": 30}, "hist_gradient_boosting": {"max_iter": 30},
             "mlp": {"hidden_layer_sizes": [32], "learning_rate_init": 0.01}}.get(estimator, {})  # fmt: skip
    fitted = train(tabular.with_preprocessor(build_pipeline(TrainParams(estimator=estimator, hyperparameters=hyper),
                                                            42, "regression"), schema),
                   snap.train.X, snap.train.y)  # fmt: skip
    metrics = regression.evaluate(fitted, snap.holdout.X, snap.holdout.y)
    baseline = regression.baseline_metrics(snap.train.y, snap.holdout.X, snap.holdout.y)
    assert metrics.r2 > baseline.r2 + 0.2 and metrics.rmse < baseline.rmse, (metrics, baseline)
    if estimator == "hist_gradient_boosting":  # skl2onnx 1.20 writes a boolean where ONNX wants an int
        with pytest.raises(serving.CompileError, match="skl2onnx cannot convert"):
            serving.compile_pipeline(fitted, schema.categorical)  # so it is served through scikit-learn
    else:
        compiled = serving.session(serving.compile_pipeline(fitted, schema.categorical))
        assert serving.check(compiled, fitted, snap.holdout.X) <= serving.TOLERANCE
    band = regression.interval(fitted, snap.holdout.X, snap.holdout.y)
    inside = np.abs(snap.holdout.y - fitted.predict(snap.holdout.X)) <= band["half_width"]
    assert inside.mean() >= 0.9, "split conformal covers at least its share of the rows it was made on"


def test_a_classifier_only_name_is_refused_for_a_number():
    with pytest.raises(ValueError, match="logistic_regression has no regressor; for regression use ridge"):
        build_pipeline(TrainParams(estimator="logistic_regression"), 0, "regression")


def test_the_gate_compares_errors_as_shares_and_r2_as_a_lift():
    rm = regression.RegressionMetrics
    params = PromotionParams()
    base = rm(rmse=70.0, mae=60.0, r2=0.0, rows=100)
    good, weak = rm(rmse=55.0, mae=44.0, r2=0.45, rows=100), rm(rmse=68.0, mae=59.0, r2=0.02, rows=100)
    assert decide_promotion(good, None, {"predicts_example": True}, params, base, "r2").promote
    refused = decide_promotion(weak, None, {"predicts_example": True}, params, base, "r2")
    assert not refused.promote and "mean predictor's 0.0000 by promotion.min_lift=0.05" in refused.reason
    assert decide_promotion(good, None, {"predicts_example": True}, params, base, "rmse").promote
    assert not decide_promotion(weak, None, {"predicts_example": True}, params, base, "rmse").promote  # 68 > 66.5
    worse = rm(rmse=56.0, mae=45.0, r2=0.44, rows=100)
    verdict = decide_promotion(worse, good, {"predicts_example": True}, params, base, "rmse")
    assert not verdict.promote and "to the champion's 55.0000" in verdict.reason  # 56 > 55 * 1.005


def test_regression_through_the_registry_and_the_gate(sources, servers, mongo_client):
    """train_and_register and validate_and_promote, as the DAG tasks call them, on MLflow 3.x."""
    params = Params(
        task="tabular",
        tabular=TabularParams(source="diabetes.csv", target="progression", drop=["patient"], task_type="auto"),
        train=TrainParams(estimator="random_forest", hyperparameters={"n_estimators": 40}),
    )
    registry = connect(registry_config_for(servers, "diabetes-regression"))
    db = mongo_client["regression_test"]
    made = lifecycle.ingest(params, sources / "data", db, SourcePolicy(sources))
    trained = lifecycle.train_and_register(params, sources / "data" / "snapshots" / made["hash"], registry, db)
    assert trained["holdout_r2"] > 0.3
    decided = lifecycle.validate_and_promote(
        params, sources / "data" / "snapshots" / made["hash"], trained["version"], registry, db, sources / "cache"
    )
    assert decided["outcome"] == "promoted", decided
    champion = registry.by_alias(CHAMPION)
    assert champion is not None and champion.tags["task_type"] == "regression"
    assert champion.tags["validation_metric"] == "r2"
    model_dir = registry.download_version(champion.version, sources / "dl")
    assert (model_dir / serving.COMPILED_FILE).exists() and "predict_fn: predict" in (model_dir / "MLmodel").read_text()
    with pytest.raises(ValueError, match="predicts a number .* serves classifiers only so far"):
        _load_local(model_dir, "diabetes-regression", champion.version, {})  # refused with the reason, not a 500
