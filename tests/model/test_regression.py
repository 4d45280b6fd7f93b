"""Numeric targets (issue #23): the prediction type inferred, regressors trained, gated and compiled.

scikit-learn's diabetes table (bundled with it: 442 rows, 10 numeric features, a numeric target) is
written as the CSV a user brings; Palmer penguins gives a classification and a regression target in
one table. The registry test runs the lifecycle's own steps against the session's MLflow and MongoDB.
"""

from __future__ import annotations

import importlib.resources
import io

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from config.settings import Settings
from model import lifecycle, regression, serving, tabular
from model.errors import DataValidationError
from model.kinds.table import KIND as TABLE
from model.monitoring import drift_check, statistics_check
from model.params import MonitoringParams, Params, PromotionParams, TabularParams, TrainParams
from model.promotion import decide_promotion
from model.registry import CHAMPION, connect
from model.snapshot import read_snapshot
from model.sources import SourcePolicy
from model.train import build_pipeline, train
from plugins.mlops_platform import batches, monitor
from tests.conftest import registry_config_for
from tests.dags.test_tabular_and_batches import batch_app

PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"


@pytest.fixture
def sources(tmp_path):
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame.insert(0, "patient", [f"p{i:03d}" for i in range(len(frame))])
    frame.loc[[3, 50, 400], "progression"] = np.nan  # a few unlabelled rows, as real tables have
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    (tmp_path / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    return tmp_path


def snapshot(sources, db, **tabular_params):
    params = Params(task="tabular", tabular=TabularParams(**tabular_params))
    made = lifecycle.ingest(params, sources / "data", db, SourcePolicy(sources))
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


def test_a_numeric_table_is_snapshotted_as_regression_with_unlabelled_rows_dropped(sources, db):
    snap = snapshot(sources, db, source="diabetes.csv", target="progression", drop=["patient"], task_type="auto")
    schema = tabular.Schema.from_dict(snap.schema)
    assert schema.regression and schema.classes == [] and len(schema.columns) == 10
    assert snap.manifest["validation"]["dropped_missing_target"] == 3
    assert snap.manifest["validation"]["task_type"]["type"] == "regression"
    assert len(snap.train) + len(snap.holdout) == 442 - 3
    assert snap.train.y.dtype == np.float64 and snap.profile["target"]["counts"]


def test_a_regression_target_that_is_not_a_number_names_the_rows(sources, db):
    frame = pd.read_csv(sources / "diabetes.csv")
    frame["progression"] = frame["progression"].astype(object)
    frame.loc[[7, 9], "progression"] = "high"
    frame.to_csv(sources / "bad.csv", index=False)
    with pytest.raises(DataValidationError, match=r"row 8 \(file line 9\), column 'progression': value 'high' is not"):
        snapshot(sources, db, source="bad.csv", target="progression", drop=["patient"], task_type="regression")


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting", "ridge", "knn", "mlp"])
def test_every_regressor_trains_beats_the_mean_and_compiles(sources, estimator, db):
    snap = snapshot(sources, db, source="diabetes.csv", target="progression", drop=["patient"], task_type="regression")
    schema = tabular.Schema.from_dict(snap.schema)
    hyper = {"random_forest": {"n_estimators": 20}, "hist_gradient_boosting": {"max_iter": 30},
             "mlp": {"hidden_layer_sizes": [16], "learning_rate_init": 0.03}}.get(estimator, {})  # fmt: skip
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


def test_drift_watches_the_predicted_values_and_feedback_the_live_error(sources, db):
    snap = snapshot(sources, db, source="diabetes.csv", target="progression", drop=["patient"], task_type="regression")
    rows = snap.holdout.X.to_dict(orient="records")
    params = MonitoringParams(min_predictions_for_drift=20, max_feedback_mae=40.0)
    features = TABLE.drift(snap.profile, [{"features": r} for r in rows])
    like_training = drift_check(snap.profile, features, snap.holdout.y.tolist(), [], params)
    shifted = drift_check(snap.profile, features, (snap.holdout.y + 120).tolist(), [], params)
    assert like_training["features"][-1] == "(predicted value)" and like_training["psi"][-1] < 0.2
    assert shifted["status"] == "alert" and "(predicted value)" in shifted["message"], shifted["message"]
    schema = tabular.Schema.from_dict(snap.schema)
    ridge = train(tabular.with_preprocessor(build_pipeline(TrainParams(estimator="ridge"), 0, "regression"), schema),
                  snap.train.X, snap.train.y)  # fmt: skip
    served = ridge.predict(snap.holdout.X).tolist()  # answers like the holdout's: no drift against the model's own
    reference = regression.with_predictions(snap.profile, ridge, snap.holdout.X)["target"]
    assert regression.value_psi(reference, served) < 1e-9 < 0.05 < regression.value_psi(snap.profile["target"], served)
    stats = {"error_rate": 0.0, "total": 10, "latency_ms": {"p95": 1.0},
             "feedback": {"accuracy": None, "mae": 55.0, "rmse": 60.0}}  # fmt: skip
    assert "feedback MAE 55 over monitoring.max_feedback_mae=40" in statistics_check(stats, params)["message"]


def test_a_log_target_is_fitted_in_logs_and_answered_in_units(sources, db):
    snap = snapshot(sources, db, source="diabetes.csv", target="progression", drop=["patient"], task_type="regression")
    schema = tabular.Schema.from_dict(snap.schema)
    pipeline = build_pipeline(TrainParams(estimator="ridge"), 0, "regression", log_target=True)
    fitted = train(tabular.with_preprocessor(pipeline, schema), snap.train.X, snap.train.y)
    predicted = fitted.predict(snap.holdout.X)
    assert 25 < predicted.min() and predicted.max() < 400, "in the target's units, not its logarithm"
    assert regression.evaluate(fitted, snap.holdout.X, snap.holdout.y).r2 > 0.3


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
    assert trained["r2"] > 0.3
    decided = lifecycle.validate_and_promote(
        params, sources / "data" / "snapshots" / made["hash"], trained["version"], registry, db, sources / "cache"
    )
    assert decided["outcome"] == "promoted", decided
    champion = registry.by_alias(CHAMPION)
    assert champion is not None and champion.tags["task_type"] == "regression"
    assert champion.tags["validation_metric"] == "r2"
    model_dir = registry.download_version(champion.version, sources / "dl")
    assert (model_dir / serving.COMPILED_FILE).exists() and "predict_fn: predict" in (model_dir / "MLmodel").read_text()

    # served: a value and its interval per row, logged, taught its true value, counted in /statistics
    row = pd.read_csv(sources / "diabetes.csv").drop(columns=["patient", "progression"]).iloc[0].to_dict()
    with batch_app(servers, sources / "app", "diabetes-regression", "regression_test") as app:
        client = app.test_client()
        info = client.get("/model-info").get_json()
        assert info["task_type"] == "regression" and info["serving"]["engine"] == "onnxruntime", info
        assert info["interval"]["coverage"] == 0.9 and info["interval"]["half_width"] > 0
        answer = client.post("/predict", json={"instances": [row, {**row, "bmi": 40.0}]})
        assert answer.status_code == 200, answer.get_json()
        first = answer.get_json()["predictions"][0]
        low, high = first["interval"]
        assert 25 < first["value"] < 346 and low < first["value"] < high  # the target's range in the data
        assert answer.get_json()["model"]["task_type"] == "regression"
        assert app.extensions["prediction_log"].flush()
        stored = client.get(f"/predictions/{first['id']}").get_json()
        assert stored["value"] == first["value"] and "label" not in stored
        token = answer.get_json()["feedback_token"]
        taught = client.post(f"/predictions/{first['id']}/feedback", json={"value": 151.0, "token": token})
        assert taught.status_code == 200 and taught.get_json()["error"] == pytest.approx(151.0 - first["value"])
        wrong = client.post(f"/predictions/{first['id']}/feedback", json={"label": "high", "token": token})
        assert wrong.status_code == 422 and wrong.get_json()["field"] == "value"
        assert app.extensions["prediction_log"].flush()
        stats = client.get("/statistics").get_json()
        assert stats["values"]["count"] == 2 and stats["values"]["mean"] > 0
        histogram = stats["per_version_value_histogram"][champion.version]
        assert sum(histogram) == 2 and len(histogram) <= len(info["value_bins"]) - 1
        assert stats["feedback"]["mae"] == pytest.approx(abs(151.0 - first["value"]), abs=1e-4)

        # a batch: the user's file as it is (target and row id included); values and intervals per row
        upload = {"file": (io.BytesIO((sources / "diabetes.csv").read_bytes()), "diabetes.csv")}
        batch_id = client.post("/batches", data=upload).get_json()["id"]
        settings = Settings(mongo_uri=servers.mongo.url, mongo_db="regression_test", model_name="diabetes-regression",
                            mlflow_tracking_uri=servers.mlflow.url,
                            model_cache_dir=sources / "batch-cache")  # fmt: skip
        summary = batches.score(batch_id, "test", settings)
        assert summary["status"] == "succeeded" and summary["rows"] == 442 and summary["values"]["max"] < 400
        assert monitor.check_champion(settings)["status"] == "ok"  # loads it and reproduces its example values
        drift = monitor.check_drift(settings)
        assert drift["predictions"] == 2 + 442 and drift["features"][-1] == "(predicted value)", drift
        assert 0 <= drift["psi"][-1] < 10  # against the champion's own holdout predictions (model/regression.py)
        result = pd.read_csv(io.BytesIO(client.get(f"/batches/{batch_id}/result").data))
        assert list(result.columns[:5]) == ["row", "prediction_id", "value", "interval_low", "interval_high"]
        assert result["row"].iloc[0] == "p000" and (result["interval_low"] < result["value"]).all()
