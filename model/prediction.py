"""The prediction record: a model's answers to rows and the document each row becomes in `predictions`.

The one place that knows a record's layout, for the app (online, app/recorder.py) and batch scoring
alike: `answer` turns a model's output into each row's fields (a class, its confidence and
probabilities; or a value, its interval and histogram bin), `documents` puts them together with what
every record carries, and `columns` gives the same layout column-wise, for the one-pass BSON encoder
(app/records.py) that encodes a large request's records at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from model import regression
from model.champion import Model

TOP = 3  # classes listed in each online answer, most likely first
UNSURE_BELOW = 0.5  # models trained before params said otherwise (monitoring.low_confidence)


@dataclass(frozen=True)
class Answers:
    """One model call's answers for n rows, kept column-wise: a large request's rows become dicts only
    where something needs them (the per-row record, the public answer)."""

    labels: list[Any]  # the predicted class, or "(value)" for a regressor (for metrics)
    values: list[dict[str, Any]] | None = None  # regression: each row's value, interval and bin
    best: np.ndarray | None = None  # classification: each row's class index
    confidence: np.ndarray | None = None  # classification: each row's probability of that class
    proba: np.ndarray | None = None  # classification: all probabilities, rounded as stored

    @cached_property
    def outputs(self) -> list[dict[str, Any]]:
        """Each row's fields as its record stores them."""
        if self.proba is None:
            assert self.values is not None
            return self.values
        assert self.confidence is not None
        columns = (self.labels, self.confidence.tolist(), self.proba.tolist())
        return [{"label": label, "confidence": c, "probabilities": p} for label, c, p in zip(*columns, strict=True)]

    def public(
        self, ids: list[str], classes: list[Any], unsure: list[str | None] | None = None
    ) -> list[dict[str, Any]]:
        """What /predict answers per row: its id and outputs; for a classifier the top classes, and
        `unsure` with its reason where the task kind judged the answer a guess (model/kinds/)."""
        if self.proba is None:
            pairs = zip(ids, self.outputs, strict=True)
            return [{"id": i, "value": o["value"], "interval": o["interval"]} for i, o in pairs]
        assert self.confidence is not None
        ranked = np.argsort(-self.proba, axis=1, kind="stable")[:, :TOP]
        k = ranked.shape[1]
        shares = self.proba[np.arange(len(ranked))[:, None], ranked].ravel().tolist()
        top = [
            {"label": classes[j], "confidence": share} for j, share in zip(ranked.ravel().tolist(), shares, strict=True)
        ]
        columns = (ids, self.labels, self.confidence.tolist(), self.proba.tolist(), unsure or [None] * len(ids))
        return [
            {"id": i, "label": label, "confidence": c, "probabilities": p, "unsure": why is not None,
             **({"unsure_reason": why} if why is not None else {}), "top": top[k * row : k * (row + 1)]}
            for row, (i, label, c, p, why) in enumerate(zip(*columns, strict=True))
        ]  # fmt: skip


def answer(model: Model, X: Any) -> Answers:
    """The served model's answers to the rows X (as its kind parsed them)."""
    if model.regression:
        values = regression.answers(model.predict_values(X), model.half_width(), model.info.get("value_bins"))
        return Answers(labels=["(value)"] * len(values), values=values)
    proba = model.predict_proba(X)
    best = proba.argmax(axis=1)
    labels = [model.labels[i] for i in best.tolist()]
    confidence = proba[np.arange(len(best)), best]
    return Answers(labels=labels, best=best, confidence=confidence, proba=proba.round(6))


def documents(
    common: dict[str, Any],
    ids: list[str],
    features: list[Any],
    answers: list[dict[str, Any]],
    per_row: dict[str, list[Any]] | None = None,
) -> list[dict[str, Any]]:
    """One record per row: `_id`, the fields every record of the call shares (`common`: kind, ts, model,
    source, ...), then the row's own (`per_row`, e.g. input_hash or the batch row's key), its features
    and its answer."""
    own = per_row or {}
    return [
        {"_id": record_id, **common, **{key: values[i] for key, values in own.items()}, "features": features[i],
         **answers[i]}
        for i, record_id in enumerate(ids)
    ]  # fmt: skip


def columns(ids: list[str], input_hashes: list[str], X: np.ndarray, answers: Answers) -> dict[str, Any]:
    """A classification's records column by column (what `documents` gives row by row, but for `common`)."""
    assert answers.confidence is not None and answers.proba is not None
    return {
        "_id": ids,
        "input_hash": input_hashes,
        "features": X,
        "label": answers.labels,
        "confidence": answers.confidence,
        "probabilities": answers.proba,
    }
