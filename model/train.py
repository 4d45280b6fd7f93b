"""Build and fit the scikit-learn Pipeline; the Pipeline (scaling included) is the artifact."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from model.evaluate import shift_images
from model.params import TrainParams

_ESTIMATORS: dict[str, type[ClassifierMixin]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "svc": SVC,
    "knn": KNeighborsClassifier,
    "dummy": DummyClassifier,
    "mlp": MLPClassifier,
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "svc": {"probability": True},
    "random_forest": {"n_jobs": 1},
    "logistic_regression": {"max_iter": 2000},
}


def build_pipeline(params: TrainParams, seed: int) -> Pipeline:
    """StandardScaler followed by the configured estimator."""
    cls = _ESTIMATORS[params.estimator]
    kwargs = {**_DEFAULTS.get(params.estimator, {}), **params.hyperparameters}
    if "random_state" in cls().get_params():
        kwargs.setdefault("random_state", seed)
    return Pipeline([("scale", StandardScaler()), ("classify", cls(**kwargs))])


def augment_with_shifts(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the four one-pixel shifts of every image, so the model tolerates off-centre digits."""
    shifted = [shift_images(X, dx, dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    return np.vstack([X, *shifted]), np.tile(y, 1 + len(shifted))


def train(pipeline: Pipeline, X: np.ndarray, y: np.ndarray, augment_shifts: bool = False) -> Pipeline:
    """Fit a fresh clone of `pipeline`; the inputs are left untouched."""
    from sklearn.base import clone

    if augment_shifts:
        X, y = augment_with_shifts(X, y)
    return clone(pipeline).fit(X, y)
