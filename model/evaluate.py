"""Holdout metrics and behavioural checks for a fitted classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from model.features import SIDE


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Scalar metrics for MLflow / tags: accuracy, macro_f1, recall_<label>."""
        out = {f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1}
        out.update({f"{prefix}recall_{k}": v for k, v in self.per_class_recall.items()})
        return out

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
    )


def shift_images(X: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move every 8x8 image by (dx, dy) pixels, filling with background."""
    grid = X.reshape(-1, SIDE, SIDE)
    out = np.zeros_like(grid)
    src_y = slice(max(0, -dy), SIDE - max(0, dy))
    dst_y = slice(max(0, dy), SIDE - max(0, -dy))
    src_x = slice(max(0, -dx), SIDE - max(0, dx))
    dst_x = slice(max(0, dx), SIDE - max(0, -dx))
    out[:, dst_y, dst_x] = grid[:, src_y, src_x]
    return out.reshape(X.shape)


def behavioural_checks(
    model: object, example: np.ndarray, X: np.ndarray, y: np.ndarray, max_shift_drop: float
) -> dict[str, object]:
    """Predicts its own input example; keeps most of its accuracy when images move one pixel."""
    checks: dict[str, object] = {}
    try:
        proba = model.predict_proba(example)  # type: ignore[attr-defined]
        checks["predicts_example"] = bool(
            proba.shape[0] == example.shape[0] and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        )
    except Exception as exc:  # any failure here is the finding, recorded as a failed check
        checks["predicts_example"] = False
        checks["predicts_example_error"] = f"{type(exc).__name__}: {exc}"
    base = float(accuracy_score(y, model.predict(X)))  # type: ignore[attr-defined]
    shifted = [
        float(accuracy_score(y, model.predict(shift_images(X, dx, dy))))  # type: ignore[attr-defined]
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
    ]
    drop = base - float(np.mean(shifted))
    checks["shift_accuracy_drop"] = round(drop, 6)
    checks["robust_to_shift"] = bool(drop <= max_shift_drop)
    return checks


def table_behavioural_checks(model: object, example: Any, schema: dict[str, Any]) -> dict[str, object]:
    """Predicts its own input example, and still answers when every categorical value is one it never saw."""
    checks: dict[str, object] = {}
    for name, frame in (
        ("predicts_example", example),
        ("handles_unknown_categories", _unseen_categories(example, schema)),
    ):
        try:
            proba = model.predict_proba(frame)  # type: ignore[attr-defined]
            checks[name] = bool(proba.shape[0] == len(frame) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6))
        except Exception as exc:  # any failure here is the finding, recorded as a failed check
            checks[name] = False
            checks[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
    return checks


def _unseen_categories(example: Any, schema: dict[str, Any]) -> Any:
    changed = example.copy()
    for column in schema["columns"]:
        if column["kind"] == "categorical":
            changed[column["name"]] = "__never_seen__"
    return changed
