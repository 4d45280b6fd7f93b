"""The regression prediction type: a numeric target, from the table to the gate.

A prediction type is a property of the target, orthogonal to the task kind (tables, images): what
estimator answers, which metrics judge it, what the trivial baseline is, and what a prediction looks
like (a class and its probabilities, or a value and its interval). Classification is the other type
(model/evaluate.py and the classifiers in model/train.py); everything regression needs is here, so a
third type (ranking, say) would be one more module like this one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from model.errors import DataValidationError

REGRESSION: Literal["regression"] = "regression"
CLASSIFICATION: Literal["classification"] = "classification"
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
COVERAGE = 0.9  # of the interval served beside each value
# `auto` picks regression for a numeric target with many distinct values (or any fraction)
_MIN_DISTINCT = 20
_MIN_DISTINCT_SHARE = 0.05


def infer_type(target: pd.Series, declared: str) -> tuple[str, str]:
    """The prediction type of a target column, and why: `declared` unless it is `auto`."""
    if declared != "auto":
        return declared, f"tabular.task_type is {declared}"
    present = target[target.notna() & (target.astype(str).str.strip() != "")]
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) == 0 or numbers.isna().any():
        return CLASSIFICATION, "auto: the target is not numeric"
    distinct = int(numbers.nunique())
    fractional = bool((numbers != numbers.round()).any())
    many = distinct > max(_MIN_DISTINCT, _MIN_DISTINCT_SHARE * len(numbers))
    if fractional or many:
        why = "has fractional values" if fractional else f"has {distinct} distinct values"
        return REGRESSION, f"auto: the target is numeric and {why}"
    return CLASSIFICATION, f"auto: the target is numeric with only {distinct} distinct whole values (classes)"


def target_values(labels: pd.Series, name: str) -> np.ndarray:
    """The target as float64, or an error naming the first rows that are not numbers."""
    numbers = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        first = int(labels.index[bad[0]])  # the row's place in the file, though unlabelled rows were dropped
        more = f" ({bad.size} rows have this problem)" if bad.size > 1 else ""
        raise DataValidationError(
            f"row {first + 1} (file line {first + 2}), column '{name}': value {labels.iloc[bad[0]]!r} is not a number, "
            f"and a regression target must be{more}; fix the rows or set tabular.task_type: classification"
        )
    return numbers


@dataclass(frozen=True)
class RegressionMetrics:
    rmse: float
    mae: float
    r2: float
    rows: int

    def flat(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}rmse": self.rmse, f"{prefix}mae": self.mae, f"{prefix}r2": self.r2}

    def score(self, metric: str) -> float | None:
        value = getattr(self, metric, None)
        return None if value is None else float(value)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate(model: Any, X: Any, y: np.ndarray) -> RegressionMetrics:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    predicted = np.asarray(model.predict(X), dtype=np.float64)
    return RegressionMetrics(
        rmse=round(float(np.sqrt(mean_squared_error(y, predicted))), 6),
        mae=round(float(mean_absolute_error(y, predicted)), 6),
        r2=round(float(r2_score(y, predicted)), 6) if len(y) > 1 else 0.0,
        rows=len(y),
    )


def baseline_metrics(y_train: np.ndarray, X: Any, y: np.ndarray) -> RegressionMetrics:
    """What always answering the training mean scores on the holdout: the gate's trivial baseline."""
    from sklearn.dummy import DummyRegressor

    return evaluate(DummyRegressor(strategy="mean").fit(np.zeros((len(y_train), 1)), y_train), X, y)


def interval(model: Any, X: Any, y: np.ndarray, coverage: float = COVERAGE) -> dict[str, Any]:
    """A split-conformal interval from the holdout's absolute residuals: value +- half_width covers
    `coverage` of new rows drawn like the holdout (the same width for every row)."""
    residuals = np.sort(np.abs(y - np.asarray(model.predict(X), dtype=np.float64)))
    n = len(residuals)
    rank = min(n, int(np.ceil((n + 1) * coverage)))
    return {
        "method": "split conformal: the holdout's absolute residuals",
        "coverage": coverage,
        "half_width": round(float(residuals[rank - 1]), 6) if n else None,
        "holdout_rows": n,
    }


def answers(values: np.ndarray, half_width: float | None, edges: list[float] | None) -> list[dict[str, Any]]:
    """Each value as a prediction record stores it: rounded, its interval, and its bin among `edges`
    (the training target's, for /statistics' histogram). One shape for the app and batch scoring."""
    from model.statistics import value_bins

    bins = value_bins(values, edges).tolist() if edges else [None] * len(values)
    return [
        {
            "value": round(v, 6),
            "interval": None if half_width is None else [round(v - half_width, 6), round(v + half_width, 6)],
            "value_bin": b,
        }
        for v, b in zip(np.asarray(values, dtype=np.float64).tolist(), bins, strict=True)
    ]


def target_profile(y: np.ndarray, bins: int) -> dict[str, Any]:
    """Quantile bins of the training target: what drift on the predicted values is measured against."""
    from model.tabular import quantile_histogram

    edges, counts = quantile_histogram(y, bins)
    return {
        "bin_edges": edges.tolist(),
        "counts": counts.tolist(),
        "mean": float(np.mean(y)) if len(y) else None,
        "std": float(np.std(y)) if len(y) else None,
        "min": float(np.min(y)) if len(y) else None,
        "max": float(np.max(y)) if len(y) else None,
    }


def with_predictions(profile: dict[str, Any], model: Any, X: Any) -> dict[str, Any]:
    """The reference profile plus the model's own predictions on the holdout, over the target's bins.

    Drift of served values is measured against these, not against the target: a regressor's answers
    are narrower than the truth (they regress to the mean), so the target itself would always look
    drifted (PSI 0.26 on diabetes served with its own training file)."""
    target = profile["target"]
    predicted = np.asarray(model.predict(X), dtype=np.float64)
    return {**profile, "target": {**target, "predicted_counts": _counts(target["bin_edges"], predicted).tolist()}}


def value_psi(target: dict[str, Any], values: list[Any]) -> float:
    """PSI of served values against the model's holdout predictions (or the target, for older profiles)."""
    from model.monitoring import psi

    present = np.asarray([v for v in values if isinstance(v, int | float)], dtype=np.float64)
    reference = np.asarray(target.get("predicted_counts") or target["counts"], dtype=np.float64)
    return psi(reference, _counts(target["bin_edges"], present).astype(np.float64))


def _counts(edges: list[float], values: np.ndarray) -> np.ndarray:
    bounds = np.asarray(edges, dtype=np.float64)
    return np.histogram(np.clip(values, bounds[0], bounds[-1]), bins=bounds)[0]
