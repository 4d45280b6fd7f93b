"""Opening a registered model's verified files for serving: the one loader of the app, batch scoring
and the monitor.

The files must have been checked against the digest the gate recorded before they get here
(model/provenance.py); this module unpickles them, reads the MLmodel metadata, asks the task kind for
what serving needs, smoke-tests the input example and loads the compiled graph if it agrees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model import kinds, regression, serving
from model.registry import load_pipeline


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    pipeline: Any
    labels: list[Any]  # the classes; [] for a regressor
    info: dict[str, Any]  # what /model-info shows
    kind: kinds.TaskKind = field(default_factory=lambda: kinds.named(None))
    spec: Any = None  # what the kind needs to serve this model (a table's schema)
    compiled: serving.Compiled | None = None  # the same answers from onnxruntime (model/serving.py)
    task_type: str = regression.CLASSIFICATION
    example: Any = None  # the input example, as the Pipeline takes it
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def regression(self) -> bool:
        return self.task_type == regression.REGRESSION

    def predict_values(self, X: Any) -> np.ndarray:
        """A regressor's values, one per row."""
        if self.compiled is not None:
            return self.compiled.predict(X)
        return np.asarray(self.pipeline.predict(_frame(X)), dtype=np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.compiled is not None:
            return self.compiled.predict_proba(X)
        return self.pipeline.predict_proba(_frame(X))  # type: ignore[no-any-return]

    def half_width(self) -> float | None:
        """The served interval's half width: value +- this covers info['interval']['coverage'] of rows."""
        return (self.info.get("interval") or {}).get("half_width")


def open_model(path: Path, name: str, version: str, info: dict[str, Any]) -> Model:
    """Load a verified model directory and smoke-test it on its input example; raise ValueError if it fails."""
    from mlflow.models import Model as MLmodel

    started = time.perf_counter()
    pipeline = load_pipeline(path)
    meta = MLmodel.load(str(path))
    raw_example = meta.load_input_example(str(path))
    if raw_example is None:
        raise ValueError(f"version {version} has no input example to smoke-test")
    metadata = meta.metadata or {}
    kind = kinds.named(metadata.get("task"))
    spec = kind.spec(metadata, path)
    example = kind.example(raw_example, spec)
    task_type = str(metadata.get("task_type", regression.CLASSIFICATION))
    if task_type == regression.REGRESSION:
        values = np.asarray(pipeline.predict(example), dtype=np.float64)
        passed = values.shape == (len(example),) and bool(np.isfinite(values).all())
    else:
        proba = pipeline.predict_proba(example)
        passed = proba.shape[0] == len(example) and bool(np.allclose(proba.sum(axis=1), 1.0, atol=1e-6))
    if not passed:
        raise ValueError(f"version {version} failed its smoke test on the input example")
    compiled, engine = serving.load_compiled(path, pipeline, kind.probes(example, spec))
    full_info = {
        **info,
        "task": kind.name,
        "signature": meta.signature.to_dict() if meta.signature else None,
        "schema": metadata.get("schema"),
        "load_seconds": round(time.perf_counter() - started, 3),
        "serving": engine,
        "task_type": task_type,
        "interval": metadata.get("interval"),
        "value_bins": metadata.get("value_bins"),
        "unsure_below": metadata.get("unsure_below"),
        "digits": metadata.get("digits"),  # the digits kind's layout (side); its evaluation sets' figures
        "evaluation": metadata.get("evaluation"),
    }
    return Model(
        name=name,
        version=version,
        pipeline=pipeline,
        labels=[] if task_type == regression.REGRESSION else pipeline.classes_.tolist(),
        info=full_info,
        kind=kind,
        spec=spec,
        compiled=compiled,
        task_type=task_type,
        example=example,
    )


def _frame(X: Any) -> Any:
    """A table's columns (tabular.columns_of) as the DataFrame scikit-learn wants; arrays as they are."""
    if isinstance(X, dict):
        import pandas as pd

        return pd.DataFrame(X)
    return X
