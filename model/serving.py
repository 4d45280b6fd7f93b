"""A lean predict_proba for serving: the fitted Pipeline's own numbers, without per-call validation.

scikit-learn validates its input on every call (dtype, finiteness, feature names, dataframe
protocols); for one row that costs several times the arithmetic. The app has already validated the
row, so for the Pipelines the platform builds (StandardScaler, then an MLP or a logistic regression)
this computes the same probabilities directly from the fitted attributes. `compile_predict_proba`
returns None for anything else, and the caller checks the result against `predict_proba` before use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _logistic(x: np.ndarray) -> np.ndarray:
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1
    return np.reciprocal(x, out=x)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x


_HIDDEN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": _relu,
    "tanh": lambda x: np.tanh(x, out=x),
    "logistic": _logistic,
    "identity": lambda x: x,
}


def _two_columns(p: np.ndarray) -> np.ndarray:
    p = p.reshape(-1, 1)
    return np.hstack([1 - p, p])


def _scaler(step: Any) -> Predict | None:
    if type(step).__name__ != "StandardScaler":
        return None
    mean, scale = step.mean_, step.scale_

    def transform(X: np.ndarray) -> np.ndarray:
        out = X - mean if mean is not None else X.copy()
        if scale is not None:
            out /= scale
        return out

    return transform


def _classifier(step: Any) -> Predict | None:
    name = type(step).__name__
    if name == "MLPClassifier" and step.activation in _HIDDEN and step.out_activation_ in ("softmax", "logistic"):
        coefs, intercepts, hidden = step.coefs_, step.intercepts_, _HIDDEN[step.activation]
        softmax = step.out_activation_ == "softmax"

        def mlp(X: np.ndarray) -> np.ndarray:
            a = X
            for i, (w, b) in enumerate(zip(coefs, intercepts, strict=True)):
                a = a @ w
                a += b
                if i < len(coefs) - 1:
                    a = hidden(a)
            return _softmax(a) if softmax else _two_columns(_logistic(a))

        return mlp
    if name == "LogisticRegression":
        coef, intercept = step.coef_, step.intercept_

        def logistic_regression(X: np.ndarray) -> np.ndarray:
            z = X @ coef.T + intercept
            return _softmax(z) if coef.shape[0] > 1 else _two_columns(_logistic(z))

        return logistic_regression
    return None


def compile_predict_proba(pipeline: Any) -> Predict | None:
    """The Pipeline's predict_proba as plain numpy, or None when a step is not one this module knows."""
    steps = [step for _, step in getattr(pipeline, "steps", [("model", pipeline)]) if step != "passthrough"]
    if not steps:
        return None
    transforms = [_scaler(step) for step in steps[:-1]]
    final = _classifier(steps[-1])
    if final is None or any(t is None for t in transforms):
        return None

    def predict_proba(X: np.ndarray) -> np.ndarray:
        for transform in transforms:
            X = transform(X)  # type: ignore[misc]
        return final(X)

    return predict_proba


def agrees(fast: Predict, pipeline: Any, X: np.ndarray) -> bool:
    """Whether the compiled function gives the Pipeline's probabilities on X."""
    try:
        return bool(np.allclose(fast(X), pipeline.predict_proba(X), rtol=1e-9, atol=1e-12))
    except (ValueError, FloatingPointError):
        return False
