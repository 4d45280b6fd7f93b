"""Holdout metrics of a fitted classifier, and the majority-class baseline the gate compares with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]
    balanced_accuracy: float = 0.0
    roc_auc: float | None = None  # None when the model gives no probabilities or a class is absent

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Scalar metrics for MLflow / tags: accuracy, balanced_accuracy, macro_f1, roc_auc, recall_<label>."""
        out = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}balanced_accuracy": self.balanced_accuracy,
            f"{prefix}macro_f1": self.macro_f1,
        }
        if self.roc_auc is not None:
            out[f"{prefix}roc_auc"] = self.roc_auc
        out.update({f"{prefix}recall_{k}": v for k, v in self.per_class_recall.items()})
        return out

    def score(self, metric: str) -> float | None:
        """The gate's metric by name (see PromotionParams.metric)."""
        value = getattr(self, metric)
        return None if value is None else float(value)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate(model: object, X: Any, y: np.ndarray, labels: list[Any]) -> Metrics:
    predicted = model.predict(X)  # type: ignore[attr-defined]
    recalls = recall_score(y, predicted, labels=labels, average=None, zero_division=0)
    return Metrics(
        accuracy=round(float(accuracy_score(y, predicted)), 6),
        macro_f1=round(float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)), 6),
        per_class_recall={str(label): round(float(r), 6) for label, r in zip(labels, recalls, strict=True)},
        confusion=confusion_matrix(y, predicted, labels=labels).tolist(),
        balanced_accuracy=round(float(np.mean(recalls[np.isin(labels, np.unique(y))])), 6) if len(y) else 0.0,
        roc_auc=_roc_auc(model, X, y),
    )


def _roc_auc(model: Any, X: Any, y: np.ndarray) -> float | None:
    classes = getattr(model, "classes_", None)
    if classes is None or not hasattr(model, "predict_proba") or len(np.unique(y)) < len(classes):
        return None
    proba = model.predict_proba(X)
    if len(classes) == 2:
        return round(float(roc_auc_score(y == classes[1], proba[:, 1])), 6)
    return round(float(roc_auc_score(y, proba, multi_class="ovr", labels=classes)), 6)


def baseline_metrics(X_train: Any, y_train: np.ndarray, X: Any, y: np.ndarray, labels: list[Any]) -> Metrics:
    """What always answering the majority class scores on the holdout: the gate's trivial baseline."""
    from sklearn.dummy import DummyClassifier

    return evaluate(DummyClassifier(strategy="most_frequent").fit(X_train, y_train), X, y, labels)


def gate_metric(metric: str, y_train: np.ndarray) -> str:
    """`auto`: accuracy for balanced classes, balanced accuracy when the largest class has 1.5 times
    the rows of the smallest (there a majority-class model scores high accuracy and learns nothing)."""
    if metric != "auto":
        return metric
    _, counts = np.unique(y_train.astype(str), return_counts=True)
    return "balanced_accuracy" if counts.max() > 1.5 * counts.min() else "accuracy"
