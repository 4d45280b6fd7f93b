from pathlib import Path

import numpy as np
import pytest

from model.data import Dataset, split
from model.evaluate import Metrics, evaluate
from model.kinds.digits import KIND as DIGITS
from model.kinds.digits import load_digits_dataset, shift_images
from model.params import Params, PromotionParams, TrainParams
from model.promotion import decide_promotion
from model.snapshot import Snapshot
from model.train import build_pipeline, train

GOOD = {"predicts_example": True, "robust_to_shift": True, "shift_accuracy_drop": 0.01}
PARAMS = PromotionParams(min_accuracy=0.9, max_regression=0.01, max_shift_drop=0.2)


def metrics(accuracy: float) -> Metrics:
    return Metrics(accuracy=accuracy, macro_f1=accuracy, per_class_recall={}, confusion=[])


@pytest.mark.parametrize(
    ("challenger", "champion", "behaviour", "promote", "reason"),
    [
        (0.95, None, GOOD, True, "first champion"),
        (0.95, 0.955, GOOD, True, "vs champion"),
        (0.95, 0.97, GOOD, False, "loses more than"),
        (0.85, None, GOOD, False, "below the floor"),
        (0.99, 0.9, {**GOOD, "robust_to_shift": False}, False, "one-pixel shift"),
        (0.99, 0.9, {**GOOD, "predicts_example": False}, False, "input example"),
    ],
)
def test_gate(challenger, champion, behaviour, promote, reason):
    decision = decide_promotion(metrics(challenger), metrics(champion) if champion else None, behaviour, PARAMS)
    assert decision.promote is promote
    assert reason in decision.reason


def test_shift_moves_pixels_and_fills_background():
    X = np.arange(64, dtype=float).reshape(1, 64)
    right = shift_images(X, 1, 0).reshape(8, 8)
    assert np.all(right[:, 0] == 0)
    assert np.array_equal(right[:, 1:], X.reshape(8, 8)[:, :-1])


def test_default_model_clears_the_gate_and_a_dummy_does_not():
    data = load_digits_dataset()
    tr, ho = split(data, 0.25, 42)
    good = train(
        build_pipeline(TrainParams(estimator="mlp", hyperparameters={"hidden_layer_sizes": [64], "max_iter": 200}), 0),
        *DIGITS.fit_rows(Params(), tr),
    )
    dummy = train(build_pipeline(TrainParams(estimator="dummy"), 0), tr.X, tr.y)
    good_metrics = evaluate(good, ho.X, ho.y, list(range(10)))
    gate = PromotionParams()
    assert good_metrics.accuracy >= 0.95
    snap = Snapshot(path=Path("."), hash="h", train=tr, holdout=ho, profile={}, manifest={})
    good_checks = DIGITS.behaviour(good, snap, Params(promotion=gate))
    assert decide_promotion(good_metrics, None, good_checks, gate).promote
    dummy_metrics = evaluate(dummy, ho.X, ho.y, list(range(10)))
    dummy_checks = DIGITS.behaviour(dummy, snap, Params(promotion=gate))
    assert not decide_promotion(dummy_metrics, good_metrics, dummy_checks, gate).promote


def test_train_does_not_mutate_its_inputs():
    data = load_digits_dataset()
    X, y = data.X[:300].copy(), data.y[:300].copy()
    pipeline = build_pipeline(TrainParams(estimator="logistic_regression", hyperparameters={"max_iter": 200}), 0)
    train(pipeline, *DIGITS.fit_rows(Params(), Dataset(X=X, y=y)))
    assert np.array_equal(X, data.X[:300]) and np.array_equal(y, data.y[:300])
    assert not hasattr(pipeline, "classes_"), "the template pipeline must stay unfitted"


def test_the_default_gate_needs_no_floor_guessed_for_a_table():
    """A real table where a good model reaches 0.79 and the majority class alone 0.72 (issue #20)."""
    gate = PromotionParams()
    baseline = metrics(0.72)
    good = decide_promotion(metrics(0.79), None, GOOD, gate, baseline)
    assert good.promote, good.reason
    weak = decide_promotion(metrics(0.75), None, GOOD, gate, baseline)
    assert not weak.promote
    assert "does not beat the majority-class baseline's 0.7200 by promotion.min_lift=0.05" in weak.reason
    assert "(accuracy: model 0.7500, baseline 0.7200, floor none)" in weak.reason
    floored = decide_promotion(metrics(0.79), None, GOOD, gate.model_copy(update={"min_accuracy": 0.8}), baseline)
    assert not floored.promote and "promotion.min_accuracy=0.8" in floored.reason


def test_imbalanced_classes_are_judged_on_a_metric_the_majority_class_cannot_pass():
    import importlib.resources

    from model import tabular
    from model.data import Dataset
    from model.evaluate import baseline_metrics, gate_metric
    from model.params import TabularParams

    frame = tabular.read_table(str(importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"))
    schema = tabular.infer_schema(frame, TabularParams(target="island"))  # 168 / 124 / 52 rows
    X, y = tabular.enforce_schema(frame, schema)
    tr, ho = split(Dataset(X=X, y=y), 0.25, 0)
    metric = gate_metric("auto", tr.y)
    assert metric == "balanced_accuracy" and gate_metric("auto", load_digits_dataset().y) == "accuracy"
    base = baseline_metrics(tr.X, tr.y, ho.X, ho.y, schema.classes)
    assert base.accuracy > 0.4 and base.balanced_accuracy == pytest.approx(1 / 3, abs=0.01)
    majority = decide_promotion(base, None, GOOD, PromotionParams(), base, metric)
    assert not majority.promote and "balanced_accuracy" in majority.reason


def test_a_challenger_that_reads_an_evaluation_set_worse_than_the_champion_is_refused():
    """A kind's evaluation sets (behaviour checks named <set>_accuracy) are compared with the champion's."""
    ok = {"predicts_example": True}
    worse = decide_promotion(metrics(0.97), metrics(0.96), {**ok, "rendered_accuracy": 0.80}, PARAMS,
                             champion_behaviour={**ok, "rendered_accuracy": 0.90})  # fmt: skip
    assert not worse.promote and "rendered_accuracy 0.8000 loses more than" in worse.reason
    same = decide_promotion(metrics(0.97), metrics(0.96), {**ok, "rendered_accuracy": 0.90}, PARAMS,
                            champion_behaviour={**ok, "rendered_accuracy": 0.90})  # fmt: skip
    assert same.promote, same.reason
