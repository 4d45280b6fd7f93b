"""The lifecycle steps (ingest, train, validate and promote, roll back), composed from pure parts and adapters.

Each step takes its adapters as arguments and returns a small JSON-able dict, so a DAG task or the
CLI can call it in a line or two.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd
from pymongo.database import Database

from model import data as datasets
from model import provenance, regression, serving, tabular
from model.errors import DataValidationError, NothingToRollBack
from model.evaluate import (
    Metrics,
    baseline_metrics,
    behavioural_checks,
    evaluate,
    gate_metric,
    table_behavioural_checks,
)
from model.params import Params
from model.promotion import decide_promotion
from model.registry import (
    CHALLENGER,
    CHAMPION,
    EXAMPLE_PREDICTIONS_ARTIFACT,
    PREVIOUS,
    PROFILE_ARTIFACT,
    Registry,
)
from model.snapshot import read_snapshot, write_snapshot
from model.sources import SourcePolicy
from model.store import load_feedback, record_event
from model.train import build_pipeline, train

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 5


def ingest(params: Params, data_dir: Path, db: Database | None, sources: SourcePolicy) -> dict[str, Any]:
    """Load the configured source (+ feedback), validate it, and write a content-hashed snapshot.

    `sources` says which directory and hosts data may be read from.
    """
    if params.task == "tabular":
        return ingest_table(params, data_dir, sources)
    p = params.data
    if p.source == "digits":
        dataset = datasets.load_digits_dataset()
    else:
        if p.image_folder is None:
            raise DataValidationError("data.source is image_folder but data.image_folder is not set")
        dataset = datasets.load_image_folder(sources.local_path(p.image_folder))
    feedback_rows = 0
    if p.include_feedback and db is not None:
        feedback = load_feedback(db, p.labels)
        feedback_rows = len(feedback)
        dataset = datasets.merge(dataset, feedback)
    report = datasets.validate_dataset(dataset, p.labels, p.min_samples_per_class, p.max_class_imbalance)
    train_set, holdout = datasets.split(dataset, p.holdout_fraction, p.seed)
    digest = datasets.content_hash(dataset)[:16] + f"-s{p.seed}-h{int(p.holdout_fraction * 100)}"
    profile = datasets.reference_profile(train_set, p.labels, p.profile_bins)
    manifest = {
        "source": p.source,
        "feedback_rows": feedback_rows,
        "train_rows": len(train_set),
        "holdout_rows": len(holdout),
        "validation": report,
        "seed": p.seed,
        "holdout_fraction": p.holdout_fraction,
        "task": "image",
        "labels": p.labels,
    }
    path = write_snapshot(data_dir, digest, train_set, holdout, profile, manifest)
    log.info("snapshot %s: %d rows (%d from feedback)", digest, len(dataset), feedback_rows)
    return {"hash": digest, "path": str(path), "rows": len(dataset), "feedback_rows": feedback_rows}


def ingest_table(params: Params, data_dir: Path, sources: SourcePolicy) -> dict[str, Any]:
    """Read the table, infer its schema (or enforce the pinned one), validate, and snapshot it."""
    p, t = params.data, params.tabular
    source = redact_source(t.source)  # what is recorded: the manifest, MLflow's dataset_source, the pin's name
    frame = read_source(t.source, sources)
    numbering = [c for c in tabular.row_number_columns(frame) if c not in (t.target, *t.drop)]
    if numbering:
        log.info("dropping %s: it only numbers the rows", ", ".join(repr(c) for c in numbering))
        frame = frame.drop(columns=numbering)
    target = frame[t.target] if t.target in frame.columns else None  # absent: infer_schema says so
    task_type, why = regression.infer_type(
        target[~tabular.missing_mask(target)] if target is not None else pd.Series(dtype=object), t.task_type
    )
    log.info("prediction type: %s (%s)", task_type, why)
    inferred = tabular.infer_schema(frame, t, task_type)
    pin = data_dir / "schemas" / f"{_slug(source)}--{_slug(t.target)}.json"
    schema = inferred
    if t.pin_schema and pin.exists():
        schema = tabular.Schema.from_dict(json.loads(pin.read_text()))
        tabular.check_compatible(schema, inferred)
        log.info("enforcing the schema pinned at %s", pin)
    frame, unlabelled = tabular.drop_unlabelled(frame, schema)
    if unlabelled:
        log.info("dropped %d rows whose target '%s' is missing", unlabelled, schema.target)
    X, y = tabular.enforce_schema(frame, schema)
    report = tabular.validate_table(X, y, schema, p.min_samples_per_class, p.max_class_imbalance)
    report["dropped_missing_target"] = unlabelled
    report["dropped_row_number_columns"] = numbering
    report["missing_cells"] = {c: int(n) for c, n in X.isna().sum().items() if n}
    if t.pin_schema and not pin.exists():
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.write_text(json.dumps(schema.to_dict(), indent=2))
        log.info("pinned the inferred schema at %s", pin)
    report["task_type"] = {"type": schema.task_type, "why": why}
    dataset = datasets.Dataset(X=X, y=y)
    train_set, holdout = datasets.split(dataset, p.holdout_fraction, p.seed, stratify=not schema.regression)
    digest = tabular.table_hash(X, y)[:16] + f"-s{p.seed}-h{int(p.holdout_fraction * 100)}"
    manifest = {
        "source": source,
        "feedback_rows": 0,
        "train_rows": len(train_set),
        "holdout_rows": len(holdout),
        "validation": report,
        "seed": p.seed,
        "holdout_fraction": p.holdout_fraction,
        "task": "tabular",
        "labels": schema.classes,
        "schema_path": str(pin) if t.pin_schema else None,
    }
    profile = tabular.reference_profile(train_set.X, train_set.y, schema, p.profile_bins)
    path = write_snapshot(data_dir, digest, train_set, holdout, profile, manifest, schema=schema.to_dict())
    log.info("snapshot %s: %d rows, %d columns", digest, len(dataset), len(schema.columns))
    return {"hash": digest, "path": str(path), "rows": len(dataset), "feedback_rows": 0}


def read_source(source: str, sources: SourcePolicy) -> Any:
    """A table from a bundled example, an allowed URL or a file inside the data-source directory."""
    if source.startswith(("http://", "https://")):
        shown = redact_source(source)
        return tabular.read_table(shown, data=sources.fetch(source, shown))
    if source.startswith("example:"):
        return tabular.read_table(source)
    return tabular.read_table(str(sources.local_path(source)))


def redact_source(source: str) -> str:
    """A source as it may be recorded: an URL's user, password and query values replaced by ***."""
    url = urlsplit(source)
    if url.scheme not in ("http", "https"):
        return source
    host = url.hostname or ""
    netloc = f"***@{host}" if (url.username or url.password) else host
    if url.port:
        netloc += f":{url.port}"
    query = urlencode([(key, "***") for key, _ in parse_qsl(url.query, keep_blank_values=True)], safe="*")
    return urlunsplit((url.scheme, netloc, url.path, query, ""))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-80:] or "table"


def train_and_register(params: Params, snapshot_path: Path, registry: Registry, db: Database) -> dict[str, Any]:
    """Fit the configured Pipeline on the snapshot, log everything to MLflow, register it as challenger.

    The registered files are downloaded back and their digest recorded (`registered` in model_events):
    the gate loads the challenger only if its files still have that digest (model/provenance.py).
    """
    snap = read_snapshot(snapshot_path)
    labels = snap.labels
    schema = tabular.Schema.from_dict(snap.schema) if snap.schema is not None else None
    numeric_target = schema is not None and schema.regression
    task_type = regression.REGRESSION if numeric_target else regression.CLASSIFICATION
    pipeline = build_pipeline(params.train, params.data.seed, task_type, params.tabular.log_target)
    if schema is not None:
        pipeline = tabular.with_preprocessor(pipeline, schema)
    pipeline = train(
        pipeline, snap.train.X, snap.train.y, augment_shifts=params.train.augment_shifts and snap.schema is None
    )
    metrics: Any = (
        regression.evaluate(pipeline, snap.holdout.X, snap.holdout.y)
        if numeric_target
        else evaluate(pipeline, snap.holdout.X, snap.holdout.y, labels)
    )
    example = snap.holdout.X[:EXAMPLE_ROWS]
    task = "tabular" if snap.schema is not None else "image"
    compiled, compiled_note = _compile(pipeline, schema, snap.holdout.X)
    extra_metadata: dict[str, Any] = {"task_type": task_type}
    if numeric_target:
        extra_metadata["interval"] = regression.interval(pipeline, snap.holdout.X, snap.holdout.y)
        extra_metadata["value_bins"] = snap.profile["target"]["bin_edges"]  # /statistics' histogram of values
    version = registry.log_and_register(
        pipeline,
        params={
            "estimator": params.train.estimator,
            **{f"hp_{k}": v for k, v in params.train.hyperparameters.items()},
            "augment_shifts": params.train.augment_shifts and task == "image",
            "task": task,
            "task_type": task_type,
            "task_type_reason": (snap.manifest.get("validation") or {}).get("task_type", {}).get("why"),
            "log_target": params.tabular.log_target if numeric_target else None,
            "seed": params.data.seed,
            "dataset_hash": snap.hash,
            "train_rows": len(snap.train),
            "holdout_rows": len(snap.holdout),
        },
        metrics=metrics.flat("holdout_"),
        dataset={"hash": snap.hash, "path": str(snapshot_path), "source": snap.manifest["source"]},
        X_train=snap.train.X,
        y_train=snap.train.y,
        input_example=example,
        figures={} if numeric_target else {"confusion_matrix.png": confusion_figure(metrics, labels)},
        artifacts={
            PROFILE_ARTIFACT: regression.with_predictions(snap.profile, pipeline, snap.holdout.X)
            if numeric_target
            else snap.profile,
            "snapshot_manifest.json": snap.manifest,
            "holdout_metrics.json": metrics.as_dict(),
            EXAMPLE_PREDICTIONS_ARTIFACT: {"labels": pipeline.predict(example).tolist()},  # values, for regression
            **({"schema.json": snap.schema} if snap.schema else {}),
        },
        metadata={
            "task": task,
            "compiled": compiled_note,
            **extra_metadata,
            **({"schema": snap.schema} if snap.schema else {}),
        },
        model_files={serving.COMPILED_FILE: compiled} if compiled else None,
        predict_fn="predict" if numeric_target else "predict_proba",
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = provenance.digest(registry.download_version(version.version, Path(tmp)))
    headline = {"holdout_r2": metrics.r2} if numeric_target else {"holdout_accuracy": metrics.accuracy}
    registry.tag_version(
        version.version, {**headline, "task": task, "task_type": task_type, provenance.DIGEST_TAG: files}
    )
    record_event(
        db,
        provenance.REGISTERED,
        model_name=registry.config.model_name,
        version=version.version,
        run_id=version.run_id,
        dataset_hash=snap.hash,
        outcome=provenance.REGISTERED,
        digest=files,
    )
    registry.set_alias(CHALLENGER, version.version)
    score = {"r2": metrics.r2} if numeric_target else {"accuracy": metrics.accuracy}
    return {"version": version.version, "run_id": version.run_id, "hash": snap.hash, **score}


def _compile(pipeline: Any, schema: tabular.Schema | None, holdout: Any) -> tuple[bytes | None, dict[str, Any]]:
    """The Pipeline compiled for serving, if skl2onnx converts it and it reproduces the holdout's probabilities.

    A Pipeline that does not compile is still registered: it is served through scikit-learn."""
    try:
        graph = serving.compile_pipeline(pipeline, schema.categorical if schema is not None else None)
        worst = serving.check(serving.session(graph), pipeline, holdout)
    except Exception as exc:  # CompileError, or onnxruntime refusing the graph: never a reason to fail training
        log.warning("not compiled for serving: %s", exc)
        return None, {"file": None, "reason": str(exc)[:500]}
    log.info("compiled for serving: largest difference on the holdout %.3g", worst)
    return graph, {"file": serving.COMPILED_FILE, "holdout_max_difference": worst}


def validate_and_promote(
    params: Params, snapshot_path: Path, version: str, registry: Registry, db: Database, cache_dir: Path
) -> dict[str, Any]:
    """Evaluate challenger and champion on the same holdout; move `champion` only if the gate passes."""
    snap = read_snapshot(snapshot_path)
    labels = snap.labels
    name = registry.config.model_name
    try:
        challenger, _, files = registry.load_verified(
            version, cache_dir / f"v{version}", provenance.recorded(db, name, version, provenance.REGISTERED)
        )
    except provenance.ProvenanceError as exc:
        reason = f"rejected: {exc}"
        registry.tag_version(version, {"validation_outcome": "rejected", "validation_reason": reason})
        record_event(db, "rejected", model_name=name, version=version, outcome="rejected", reason=reason)
        log.warning("version %s %s", version, reason)
        return {"version": version, "outcome": "rejected", "reason": reason}
    numeric_target = snap.schema is not None and snap.schema.get("task_type") == regression.REGRESSION

    def holdout_metrics(model: Any) -> Any:
        if numeric_target:
            return regression.evaluate(model, snap.holdout.X, snap.holdout.y)
        return evaluate(model, snap.holdout.X, snap.holdout.y, labels)

    challenger_metrics = holdout_metrics(challenger)
    if numeric_target:
        metric: str = "r2" if params.promotion.metric == "auto" else params.promotion.metric
        if metric not in (*regression.LOWER_IS_BETTER, "r2"):
            raise DataValidationError(
                f"promotion.metric {metric} is for classes; a numeric target takes r2, rmse or mae"
            )
        baseline: Any = regression.baseline_metrics(snap.train.y, snap.holdout.X, snap.holdout.y)
    else:
        metric = gate_metric(params.promotion.metric, snap.train.y)
        baseline = baseline_metrics(snap.train.X, snap.train.y, snap.holdout.X, snap.holdout.y, labels)
    if snap.schema is None:
        behaviour = behavioural_checks(
            challenger, snap.holdout.X[:EXAMPLE_ROWS], snap.holdout.X, snap.holdout.y, params.promotion.max_shift_drop
        )
    else:
        behaviour = table_behavioural_checks(challenger, snap.holdout.X[:EXAMPLE_ROWS], snap.schema)
    champion_info = registry.by_alias(CHAMPION)
    task = "tabular" if snap.schema is not None else "image"
    if champion_info is not None and champion_info.tags.get("task", "image") != task:
        raise DataValidationError(
            f"the champion of {registry.config.model_name} is an {champion_info.tags.get('task', 'image')} model and "
            f"this snapshot is {task} data: give each task kind its own MODEL_NAME"
        )
    champion_metrics: Any = None
    unverified = ""
    if champion_info is not None and champion_info.version != version:
        try:
            champion, _, _ = registry.load_verified(
                champion_info.version,
                cache_dir / f"v{champion_info.version}",
                provenance.recorded(db, name, champion_info.version),
            )
            champion_metrics = holdout_metrics(champion)
        except provenance.ProvenanceError as exc:  # judged against the floor alone, and said so
            unverified = f" (the champion was not compared: {exc})"
            log.warning("champion not loaded: %s", exc)
    decision = decide_promotion(challenger_metrics, champion_metrics, behaviour, params.promotion, baseline, metric)
    if unverified:
        decision = type(decision)(decision.promote, decision.reason + unverified)
    if champion_info is not None and champion_info.version == version:
        decision = type(decision)(False, "rejected: this version already is the champion")
    outcome = "promoted" if decision.promote else "rejected"
    record = {
        "model_name": registry.config.model_name,
        "version": version,
        "previous_champion": champion_info.version if champion_info else None,
        "dataset_hash": snap.hash,
        "challenger_metrics": challenger_metrics.flat(),
        "champion_metrics": champion_metrics.flat() if champion_metrics else None,
        "baseline_metrics": baseline.flat(),
        "metric": metric,
        "behaviour": behaviour,
        "thresholds": params.promotion.model_dump(),
        "outcome": outcome,
        "reason": decision.reason,
        "digest": files,
    }
    registry.tag_version(
        version,
        {
            "validation_outcome": outcome,
            "validation_reason": decision.reason,
            "validation_dataset_hash": snap.hash,
            "validation_accuracy": None if numeric_target else challenger_metrics.accuracy,
            "validation_champion_accuracy": None
            if numeric_target or not champion_metrics
            else champion_metrics.accuracy,
            "validation_metric": metric,
            "validation_score": challenger_metrics.score(metric),
            "validation_baseline_score": baseline.score(metric),
            "validation_thresholds": params.promotion.model_dump(),
            provenance.DIGEST_TAG: files,
        },
    )
    if decision.promote:
        if champion_info is not None:
            registry.set_alias(PREVIOUS, champion_info.version)
        registry.set_alias(CHAMPION, version)
    record_event(db, outcome, **record)
    log.info("version %s %s: %s", version, outcome, decision.reason)
    return {"version": version, "outcome": outcome, "reason": decision.reason}


def rollback(registry: Registry, db: Database) -> dict[str, Any]:
    """Move `champion` back to `previous`; the demoted version becomes `previous`."""
    champion, previous = registry.by_alias(CHAMPION), registry.by_alias(PREVIOUS)
    if previous is None:
        raise NothingToRollBack("nothing to roll back to: no version carries the alias 'previous'")
    registry.set_alias(CHAMPION, previous.version)
    if champion is not None:
        registry.set_alias(PREVIOUS, champion.version)
    reason = f"rolled back from version {champion.version if champion else None} to {previous.version}"
    registry.tag_version(previous.version, {"rollback": reason})
    record_event(
        db,
        "rollback",
        model_name=registry.config.model_name,
        version=previous.version,
        previous_champion=champion.version if champion else None,
        outcome="rollback",
        reason=reason,
    )
    return {"champion": previous.version, "previous": champion.version if champion else None, "reason": reason}


def confusion_figure(metrics: Metrics, labels: list[Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(metrics.confusion)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), [str(label) for label in labels])
    ax.set_yticks(range(len(labels)), [str(label) for label in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"holdout accuracy {metrics.accuracy:.3f}")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig
