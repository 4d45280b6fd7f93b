"""The compiled predict_proba matches scikit-learn's; prediction ids sort by time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from model.data import load_digits_dataset, split
from model.ids import _uuid7, derived_ids, id_floor, time_ordered_ids
from model.params import TrainParams
from model.serving import agrees, compile_predict_proba
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
    ],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_compiled_probabilities_equal_the_pipelines(digits, estimator, hyperparameters, binary):
    train_set, holdout = digits
    mask = train_set.y < 2 if binary else np.ones(len(train_set), dtype=bool)
    params = TrainParams(estimator=estimator, hyperparameters=hyperparameters)
    pipeline = train(build_pipeline(params, 42), train_set.X[mask], train_set.y[mask])
    fast = compile_predict_proba(pipeline)
    assert fast is not None
    assert agrees(fast, pipeline, holdout.X) and agrees(fast, pipeline, holdout.X[:1])
    assert fast(holdout.X).shape == (len(holdout), 2 if binary else 10)


def test_unknown_pipelines_are_not_compiled(digits):
    train_set, _ = digits
    forest = train(build_pipeline(TrainParams(estimator="random_forest", hyperparameters={"n_estimators": 3}), 42),
                   train_set.X, train_set.y)  # fmt: skip
    assert compile_predict_proba(forest) is None


def test_a_wrong_compiled_function_is_caught(digits):
    train_set, holdout = digits
    pipeline = train(build_pipeline(TrainParams(estimator="logistic_regression"), 42), train_set.X, train_set.y)
    assert not agrees(lambda X: np.full((len(X), 10), 0.1), pipeline, holdout.X)


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
