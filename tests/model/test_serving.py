"""The compiled graph reproduces scikit-learn or is not served; prediction ids sort by time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from model import serving
from model.data import split
from model.ids import _NAMESPACE, _uuid7, derived_ids, id_floor, time_ordered_ids
from model.kinds.digits import KIND as DIGITS
from model.kinds.digits import load_digits_dataset
from model.params import TrainParams
from model.train import build_pipeline, train


@pytest.fixture(scope="module")
def digits():
    return split(load_digits_dataset(), 0.25, 42)


@pytest.mark.parametrize(
    ("estimator", "hyperparameters", "binary"),
    [
        ("mlp", {"hidden_layer_sizes": [32], "max_iter": 30}, False),
        ("mlp", {"hidden_layer_sizes": [16, 8], "activation": "tanh", "max_iter": 30}, True),
        ("logistic_regression", {}, False),
        ("logistic_regression", {}, True),
        ("random_forest", {"n_estimators": 20}, False),  # float32 thresholds: the graph casts, as sklearn does
        ("knn", {}, False),
    ],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_compiled_probabilities_equal_the_pipelines(digits, estimator, hyperparameters, binary):
    train_set, holdout = digits
    mask = train_set.y < 2 if binary else np.ones(len(train_set), dtype=bool)
    params = TrainParams(estimator=estimator, hyperparameters=hyperparameters)
    pipeline = train(build_pipeline(params, 42), train_set.X[mask], train_set.y[mask])
    compiled = serving.session(serving.compile_pipeline(pipeline))
    assert serving.check(compiled, pipeline, holdout.X) <= serving.TOLERANCE
    assert serving.check(compiled, pipeline, DIGITS.probes(holdout.X[:3], None)) <= serving.TOLERANCE
    assert compiled.predict_proba(holdout.X[:1]).shape == (1, 2 if binary else 10)


def test_an_mlp_classifier_runs_in_float32_and_answers_float64(digits):
    """Its weights in float32 (half the memory: faster once an upload's preprocessing has cleared the cache),
    its probabilities in float64 and within TOLERANCE of scikit-learn's; a regressor keeps float64."""
    import onnx

    train_set, holdout = digits
    params = TrainParams(estimator="mlp", hyperparameters={"hidden_layer_sizes": [32], "max_iter": 30})
    pipeline = train(build_pipeline(params, 42), train_set.X, train_set.y)
    graph = serving.compile_pipeline(pipeline)
    weights = {
        i.name: onnx.TensorProto.DataType.Name(i.data_type)
        for i in onnx.load_from_string(graph).graph.initializer
        if len(i.dims) == 2
    }
    assert weights and set(weights.values()) == {"FLOAT"}, weights
    compiled = serving.session(graph)
    assert compiled.predict_proba(holdout.X[:2]).dtype == np.float64
    assert serving.check(compiled, pipeline, holdout.X) <= serving.TOLERANCE

    regressor = train(build_pipeline(params, 42, task_type="regression"), train_set.X, train_set.y.astype(float) * 1000)
    matrices = [
        i for i in onnx.load_from_string(serving.compile_pipeline(regressor)).graph.initializer if len(i.dims) == 2
    ]
    assert {onnx.TensorProto.DataType.Name(i.data_type) for i in matrices} == {"DOUBLE"}


def test_a_pipeline_skl2onnx_cannot_convert_is_refused_with_the_reason(digits):
    train_set, _ = digits
    dummy = train(build_pipeline(TrainParams(estimator="dummy"), 42), train_set.X, train_set.y)
    with pytest.raises(serving.CompileError, match="skl2onnx cannot convert this Pipeline.*DummyClassifier"):
        serving.compile_pipeline(dummy)


def test_a_graph_that_disagrees_is_not_served(digits, tmp_path):
    """The load check has teeth: another model's graph, logged beside this one, is refused, and so is none."""
    train_set, holdout = digits
    fit = lambda seed: train(build_pipeline(TrainParams(estimator="logistic_regression",  # noqa: E731
                                                        hyperparameters={"C": 0.01}), seed),
                             train_set.X[seed:], train_set.y[seed:])  # fmt: skip
    pipeline, other = fit(0), fit(300)
    with pytest.raises(serving.CompileError, match=r"differs from scikit-learn by .* on class .*tolerance 1e-05"):
        serving.check(serving.session(serving.compile_pipeline(other)), pipeline, holdout.X)

    compiled, engine = serving.load_compiled(tmp_path, pipeline, holdout.X[:5])
    assert compiled is None and engine["engine"] == "scikit-learn" and "no compiled graph" in engine["reason"]
    (tmp_path / serving.COMPILED_FILE).write_bytes(serving.compile_pipeline(other))
    compiled, engine = serving.load_compiled(tmp_path, pipeline, holdout.X[:5])
    assert compiled is None and "differs from scikit-learn" in engine["reason"]
    (tmp_path / serving.COMPILED_FILE).write_bytes(b"not a graph")
    compiled, engine = serving.load_compiled(tmp_path, pipeline, holdout.X[:5])
    assert compiled is None and "onnxruntime could not load the graph" in engine["reason"]
    (tmp_path / serving.COMPILED_FILE).write_bytes(serving.compile_pipeline(pipeline))
    compiled, engine = serving.load_compiled(tmp_path, pipeline, holdout.X[:5])
    assert compiled is not None and engine["engine"] == "onnxruntime" and engine["max_difference"] <= 1e-5


def test_ids_are_uuid7_and_ordered_by_time():
    before = datetime.now(UTC)
    ids = time_ordered_ids(50)
    assert len(set(ids)) == 50 and all(uuid.UUID(i).version == 7 for i in ids)
    assert all(id_floor(before - timedelta(milliseconds=1)) <= i for i in ids)
    assert all(i < id_floor(before + timedelta(seconds=5)) for i in ids)
    earlier = derived_ids("batch", before - timedelta(hours=1), 3)
    assert earlier == derived_ids("batch", before - timedelta(hours=1), 3), "derived ids are stable"
    assert max(earlier) < min(ids)


def test_ids_keep_the_layout_batch_ids_were_derived_with():
    """Batch ids derive from the batch: a re-run after an upgrade must produce the ids of the first run."""
    at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    keys = [uuid.uuid5(uuid.NAMESPACE_OID, str(i)).hex[:20] for i in range(200)]
    head = f"{int(at.timestamp() * 1000):012x}"
    expected = [
        f"{head[:8]}-{head[8:]}-7{r[:3]}-{'89ab'[int(r[3], 16) & 3]}{r[4:7]}-{r[7:19]}" for r in keys
    ]  # the format the first release wrote, one string at a time
    ms = int(at.timestamp() * 1000)
    assert _uuid7(ms, "".join(keys), len(keys)) == expected  # built with numpy
    assert _uuid7(ms, "".join(keys[:5]), 5) == expected[:5]  # formatted one by one
    parsed = [uuid.UUID(i) for i in expected]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert derived_ids("batch-1", at, 3) == derived_ids("batch-1", at, 3) != derived_ids("batch-2", at, 3)
    # each row's random part is uuid5 of "<batch>:<row>", as the first release computed it
    first_release = "".join(uuid.uuid5(_NAMESPACE, f"batch-1:{i}").hex[:20] for i in range(40))
    assert derived_ids("batch-1", at, 40) == _uuid7(ms, first_release, 40)
    assert derived_ids("batch-1", at, 4) == _uuid7(ms, first_release[:80], 4)
