"""Build and fit the scikit-learn Pipeline; the Pipeline (scaling included) is the artifact."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from model.params import TrainParams

# estimator name -> (classifier, regressor); None where the name has no such estimator
_ESTIMATORS: dict[str, tuple[type[BaseEstimator] | None, type[BaseEstimator] | None]] = {
    "logistic_regression": (LogisticRegression, None),
    "ridge": (None, Ridge),
    "random_forest": (RandomForestClassifier, RandomForestRegressor),
    "hist_gradient_boosting": (HistGradientBoostingClassifier, HistGradientBoostingRegressor),
    "svc": (SVC, SVR),
    "knn": (KNeighborsClassifier, KNeighborsRegressor),
    "dummy": (DummyClassifier, DummyRegressor),
    "mlp": (MLPClassifier, MLPRegressor),
}
_DEFAULTS: dict[type[BaseEstimator], dict[str, Any]] = {
    SVC: {"probability": True},
    RandomForestClassifier: {"n_jobs": 1},
    RandomForestRegressor: {"n_jobs": 1},
    LogisticRegression: {"max_iter": 2000},
    MLPRegressor: {"max_iter": 1000},
}


def build_pipeline(
    params: TrainParams, seed: int, task_type: str = "classification", log_target: bool = False
) -> Pipeline:
    """StandardScaler followed by the configured estimator: its classifier, or its regressor for a
    numeric target (fitted on log1p of the target when `log_target`, answering in its units)."""
    regression = task_type == "regression"
    cls = _ESTIMATORS[params.estimator][1 if regression else 0]
    if cls is None:
        other = "ridge" if params.estimator == "logistic_regression" else "logistic_regression"
        kind = "regressor" if regression else "classifier"
        raise ValueError(f"train.estimator {params.estimator} has no {kind}; for {task_type} use {other} instead")
    kwargs = {**_DEFAULTS.get(cls, {}), **params.hyperparameters}
    if "random_state" in cls().get_params():
        kwargs.setdefault("random_state", seed)
    estimator: Any = cls(**kwargs)
    if regression and log_target:
        estimator = TransformedTargetRegressor(regressor=estimator, func=np.log1p, inverse_func=np.expm1)
    return Pipeline([("scale", StandardScaler()), ("regress" if regression else "classify", estimator)])


def train(pipeline: Pipeline, X: Any, y: np.ndarray) -> Pipeline:
    """Fit a fresh clone of `pipeline`; the inputs are left untouched."""
    from sklearn.base import clone

    return clone(pipeline).fit(X, y)
