"""Compiled serving: the fitted Pipeline as an ONNX graph (skl2onnx), run by onnxruntime.

scikit-learn validates its input on every call and walks a forest tree by tree in Python-facing
code: one row through a 200-tree forest behind a ColumnTransformer costs some 40 ms here, while the
same Pipeline compiled to ONNX answers in under 0.1 ms. So training compiles the Pipeline
(`compile_pipeline`) and logs the graph inside the model directory as COMPILED_FILE, where the
provenance digest covers it. Whoever loads the model (`load_compiled`) runs the graph only after it
reproduced the Pipeline's probabilities on the input example and on perturbed copies of it (missing
cells included) within TOLERANCE for every class; otherwise it serves through scikit-learn and says why.

Two gaps in skl2onnx are filled here with its own extension point (`update_registered_converter`):
- `MissingIndicator` has no converter: its graph is IsNaN then Cast;
- `SimpleImputer` converts to ONNX's `Imputer`, which onnxruntime runs on float32 only, and which
  skl2onnx refuses for text columns whose missing value is NaN. Numbers: Where(IsNaN(x), median, x);
  text: missing cells are fed as "" (a missing marker, so never a category) and replaced by the fill value.

The graph casts to float32 (skl2onnx's CastTransformer) right before two kinds of estimator, and keeps
float64 everywhere else:
- trees: scikit-learn compares float32 copies of the features against its thresholds;
- an MLP classifier: its weights in float32 are half the memory, which matters once an upload's
  preprocessing has pushed them out of the cache: one row through a 256-256-10 network took 0.10-0.19
  ms right after an upload's preprocessing in float64, 0.06-0.07 in float32; 1,000 rows 4.3 and 2.1 ms
  (onnxruntime 1.32, measured in-process on this 2-core machine); its probabilities stay
  within 3e-7 of scikit-learn's (the load check holds them to TOLERANCE). Not a regressor: its values
  are unbounded, and float32 would keep only 7 digits of them.
The answers leave the graph as float64, whatever it computed in.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

COMPILED_FILE = "compiled.onnx"
TOLERANCE = 1e-5  # the most a compiled probability may differ from scikit-learn's, for any class
PROBES = 64  # perturbed rows checked at load, beside the input example
TEXT_MISSING = ""  # how a missing text cell is fed to the graph
# estimators run on float32 features: trees (scikit-learn's tree DTYPE) and MLP classifiers (module docstring)
_FLOAT32 = ("RandomForest", "ExtraTrees", "DecisionTree", "GradientBoosting", "ExtraTree", "MLPClassifier")


Table: TypeAlias = np.ndarray | pd.DataFrame | Mapping[str, np.ndarray]  # a matrix, or a table's columns by name


class CompileError(Exception):
    """The Pipeline cannot be compiled, or its compiled graph does not reproduce it."""


@dataclass(frozen=True)
class Compiled:
    """An onnxruntime session over a compiled Pipeline: `predict_proba` takes what the Pipeline takes."""

    session: Any
    inputs: list[tuple[str, bool]]  # (name, is text) in the graph's order; one numeric "X" for a matrix

    def predict_proba(self, X: Table) -> np.ndarray:
        return np.asarray(self.session.run(["probabilities"], self.feed(X))[0], dtype=np.float64)

    def predict(self, X: Table) -> np.ndarray:
        """A regressor's values, one per row."""
        return np.asarray(self.session.run(["variable"], self.feed(X))[0], dtype=np.float64).reshape(-1)

    def feed(self, X: Table) -> dict[str, np.ndarray]:
        """The graph's inputs: the matrix itself, or a table's columns (NaN or None where missing)."""
        if isinstance(X, np.ndarray):
            return {self.inputs[0][0]: np.ascontiguousarray(X, dtype=np.float64)}
        feed = {}
        for name, text in self.inputs:
            column = X[name]
            if text:
                values = np.array(column, dtype=object)
                values[pd.isna(values)] = TEXT_MISSING
            else:  # a float64 Series or array passes through without a copy
                values = np.asarray(column, dtype=np.float64)
            feed[name] = values.reshape(-1, 1)
        return feed


def compile_pipeline(pipeline: Any, text_columns: list[str] | None = None) -> bytes:
    """The ONNX graph of a fitted Pipeline (a classifier's probabilities, or a regressor's values), as bytes.

    A table's Pipeline (`text_columns` given, maybe empty) takes one input per column, text for those
    named, float64 for the others; an image Pipeline takes one float64 matrix. Raises CompileError
    when skl2onnx cannot convert a step.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.sklapi import CastTransformer
    from sklearn.pipeline import Pipeline

    _register_converters()
    final = pipeline.steps[-1][1]
    steps = list(pipeline.steps)
    if type(final).__name__.startswith(_FLOAT32):
        steps.insert(len(steps) - 1, ("float32", CastTransformer(dtype=np.float32)))
    graph = Pipeline(steps)
    types: list[tuple[str, Any]] = [("X", DoubleTensorType([None, int(pipeline.n_features_in_)]))]
    if text_columns is not None:
        text = set(text_columns)
        column = {True: StringTensorType([None, 1]), False: DoubleTensorType([None, 1])}
        types = [(c, column[c in text]) for c in pipeline.feature_names_in_]
    try:
        options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
        onx = to_onnx(graph, initial_types=types, options=options, target_opset=18)
    except Exception as exc:  # skl2onnx raises RuntimeError, NotImplementedError, ValueError... per step
        raise CompileError(f"skl2onnx cannot convert this Pipeline: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return onx.SerializeToString()  # type: ignore[no-any-return]


def session(graph: bytes) -> Compiled:
    """An onnxruntime session on one thread: the app runs a request per thread, batch scoring a chunk."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type == "tensor(string)") for i in sess.get_inputs()]
    return Compiled(session=sess, inputs=inputs)


def check(compiled: Compiled, pipeline: Any, X: np.ndarray | pd.DataFrame) -> float:
    """The largest difference from the Pipeline's probabilities on X; CompileError above TOLERANCE.

    A regressor's values are compared relative to their size: |difference| / max(1, |value|)."""
    classifier = hasattr(pipeline, "classes_")
    expected = pipeline.predict_proba(X) if classifier else np.asarray(pipeline.predict(X), dtype=np.float64)
    try:
        got = compiled.predict_proba(X) if classifier else compiled.predict(X)
    except Exception as exc:  # onnxruntime raises its own error types
        raise CompileError(f"the compiled graph failed on the probe rows: {type(exc).__name__}: {exc}") from exc
    if got.shape != expected.shape:
        raise CompileError(f"the compiled graph answers shape {got.shape}, scikit-learn {expected.shape}")
    if not classifier:
        relative = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
        worst_value = float(relative.max()) if relative.size else 0.0
        if not worst_value <= TOLERANCE:
            raise CompileError(
                f"the compiled graph differs from scikit-learn by {worst_value:.3g} (tolerance {TOLERANCE:g})"
            )
        return worst_value
    per_class = np.abs(got - expected).max(axis=0)
    worst = int(per_class.argmax())
    if not per_class[worst] <= TOLERANCE:  # NaN fails too
        raise CompileError(
            f"the compiled graph differs from scikit-learn by {per_class[worst]:.3g} on class "
            f"{pipeline.classes_[worst]!r} (tolerance {TOLERANCE:g} per class)"
        )
    return float(per_class.max())


def load_compiled(
    model_dir: Path, pipeline: Any, probes: np.ndarray | pd.DataFrame
) -> tuple[Compiled | None, dict[str, Any]]:
    """The compiled graph logged with a model, if it reproduces the Pipeline on `probes`; and why (not)."""
    path = model_dir / COMPILED_FILE
    if not path.exists():
        return None, _engine(None, "no compiled graph was logged with this version (trained before compiled serving)")
    try:
        compiled = session(path.read_bytes())
        worst = check(compiled, pipeline, probes)
    except CompileError as exc:
        log.warning("serving through scikit-learn: %s", exc)
        return None, _engine(None, str(exc))
    except Exception as exc:  # a graph onnxruntime cannot load
        log.warning("serving through scikit-learn: onnxruntime could not load the graph: %s", exc)
        return None, _engine(None, f"onnxruntime could not load the graph: {type(exc).__name__}: {str(exc)[:300]}")
    return compiled, {**_engine(compiled, None), "max_difference": worst, "probe_rows": len(probes)}


def noisy_probes(example: np.ndarray, rows: int = PROBES, seed: int = 0) -> np.ndarray:
    """The example and noisy copies of it, in the example's value range (rows of numbers)."""
    rng = np.random.default_rng(seed)
    low, high = float(example.min()), float(example.max())
    noise = rng.normal(0, (high - low) / 5 or 1, (rows, example.shape[1]))
    return np.vstack([example, np.clip(np.resize(example, (rows, example.shape[1])) + noise, low, high)])


def _engine(compiled: Compiled | None, reason: str | None) -> dict[str, Any]:
    import onnxruntime

    if compiled is None:
        return {"engine": "scikit-learn", "reason": reason}
    return {"engine": "onnxruntime", "onnxruntime": onnxruntime.__version__, "tolerance": TOLERANCE}


_registered = False


def _register_converters() -> None:
    """Converters for the two steps skl2onnx cannot run here (module docstring); idempotent."""
    global _registered
    if _registered:
        return
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import OnnxCast, OnnxIsNaN, OnnxWhere
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.impute import MissingIndicator, SimpleImputer

    def indicator_shape(operator: Any) -> None:
        rows = operator.inputs[0].get_first_dimension()
        operator.outputs[0].type = operator.inputs[0].type.__class__([rows, len(operator.raw_operator.features_)])

    def indicator(scope: Any, operator: Any, container: Any) -> None:
        op = operator.raw_operator
        if op.features != "all" or not (isinstance(op.missing_values, float) and np.isnan(op.missing_values)):
            raise NotImplementedError("only MissingIndicator(features='all', missing_values=nan) is compiled")
        to = TensorProto.DOUBLE if isinstance(operator.inputs[0].type, DoubleTensorType) else TensorProto.FLOAT
        opset = container.target_opset
        isnan = OnnxIsNaN(operator.inputs[0], op_version=opset)
        OnnxCast(isnan, to=to, op_version=opset, output_names=operator.outputs[:1]).add_to(scope, container)

    def imputer(scope: Any, operator: Any, container: Any) -> None:
        op = operator.raw_operator
        nan = isinstance(op.missing_values, float) and np.isnan(op.missing_values)
        if isinstance(operator.inputs[0].type, StringTensorType) and nan:
            operator.raw_operator = copy.copy(op)
            operator.raw_operator.missing_values = TEXT_MISSING
            convert_sklearn_imputer(scope, operator, container)
            return
        if not nan or len(operator.inputs) != 1 or np.isnan(op.statistics_).any():
            convert_sklearn_imputer(scope, operator, container)
            return
        dtype = np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType) else np.float32
        opset = container.target_opset
        x = operator.inputs[0]
        fill = op.statistics_.astype(dtype)
        OnnxWhere(OnnxIsNaN(x, op_version=opset), fill, x, op_version=opset, output_names=operator.outputs[:1]).add_to(
            scope, container
        )

    update_registered_converter(MissingIndicator, "SklearnMissingIndicator", indicator_shape, indicator)
    update_registered_converter(SimpleImputer, "SklearnImputer", calculate_sklearn_imputer_output_shapes, imputer)
    _registered = True
