"""The lifecycle steps (ingest, train, validate and promote, roll back), composed from pure parts and adapters.

Each step takes its adapters as arguments and returns a small JSON-able dict, so a DAG task or the
CLI can call it in a line or two.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pymongo.database import Database

from model import data as datasets
from model import kinds, provenance, regression, serving
from model.errors import DataValidationError, NothingToRollBack
from model.evaluate import Metrics, baseline_metrics, evaluate, gate_metric
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
from model.store import record_event
from model.train import train

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 5


def ingest(params: Params, data_dir: Path, db: Database, sources: SourcePolicy) -> dict[str, Any]:
    """Load the configured source (digits with feedback), validate it, and store a content-hashed snapshot.

    `sources` says which directory and hosts data may be read from. The snapshot goes to MongoDB
    (model/snapshot.py), with this host's copy under `data_dir`; what is returned names it by its
    digest (`hash`), which is all another host needs to read it.
    """
    kind = kinds.configured(params, sources)
    loaded = kind.load(params, sources, db, data_dir)
    p = params.data
    train_set, holdout = datasets.split(loaded.dataset, p.holdout_fraction, p.seed, stratify=loaded.stratify)
    digest = loaded.hash[:16] + f"-s{p.seed}-h{int(p.holdout_fraction * 100)}"
    manifest = {
        **loaded.manifest,
        "train_rows": len(train_set),
        "holdout_rows": len(holdout),
        "seed": p.seed,
        "holdout_fraction": p.holdout_fraction,
        "task": kind.name,
        "labels": loaded.labels,
    }
    profile = kind.profile(train_set, loaded, p.profile_bins)
    write_snapshot(db, data_dir, digest, train_set, holdout, profile, manifest, schema=loaded.schema)
    feedback_rows = int(loaded.manifest.get("feedback_rows", 0))
    log.info("%s snapshot %s: %d rows (%d from feedback)", kind.name, digest, len(loaded.dataset), feedback_rows)
    return {"hash": digest, "rows": len(loaded.dataset), "feedback_rows": feedback_rows}


def train_and_register(params: Params, snapshot_path: Path, registry: Registry, db: Database) -> dict[str, Any]:
    """Fit the configured Pipeline on the snapshot, log everything to MLflow, register it as challenger.

    The registered files are downloaded back and their digest recorded (`registered` in model_events):
    the gate loads the challenger only if its files still have that digest (model/provenance.py).
    """
    snap = read_snapshot(snapshot_path)
    labels = snap.labels
    kind = kinds.named(snap.task)
    numeric_target = snap.task_type == regression.REGRESSION
    X_fit, y_fit = kind.fit_rows(params, snap.train)
    pipeline = train(kind.pipeline(params, snap), X_fit, y_fit)
    metrics: Any = (
        regression.evaluate(pipeline, snap.holdout.X, snap.holdout.y)
        if numeric_target
        else evaluate(pipeline, snap.holdout.X, snap.holdout.y, labels)
    )
    example = snap.holdout.X[:EXAMPLE_ROWS]
    # the kind's own evaluation sets (digits: rendered and handwritten uploads), logged beside the holdout
    evaluation = {
        key: value
        for key, value in kind.behaviour(pipeline, snap, params).items()
        if key.endswith("_accuracy") and isinstance(value, float)
    }
    kind_metadata = kind.metadata(snap)
    compiled, compiled_note = _compile(pipeline, kind.text_columns(kind_metadata), snap.holdout.X)
    # a classifier's answer is flagged unsure under this confidence, as monitoring counts it low
    extra_metadata: dict[str, Any] = {"task_type": snap.task_type, "unsure_below": params.monitoring.low_confidence}
    if numeric_target:
        extra_metadata["interval"] = regression.interval(pipeline, snap.holdout.X, snap.holdout.y)
        extra_metadata["value_bins"] = snap.profile["target"]["bin_edges"]  # /statistics' histogram of values
    version = registry.log_and_register(
        pipeline,
        params={
            "estimator": params.train.estimator,
            **{f"hp_{k}": v for k, v in params.train.hyperparameters.items()},
            "fitted_rows": len(y_fit),  # more than train_rows when the kind augments (digits: shifted copies)
            "task": kind.name,
            "task_type": snap.task_type,
            "task_type_reason": (snap.manifest.get("validation") or {}).get("task_type", {}).get("why"),
            "log_target": params.tabular.log_target if numeric_target else None,
            "seed": params.data.seed,
            "dataset_hash": snap.hash,
            "train_rows": len(snap.train),
            "holdout_rows": len(snap.holdout),
        },
        metrics={**metrics.flat("holdout_"), **evaluation},
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
            **{f"{key}.json": value for key, value in kind_metadata.items()},
        },
        metadata={
            "task": kind.name,
            "compiled": compiled_note,
            "evaluation": evaluation,
            **extra_metadata,
            **kind_metadata,
        },
        model_files={**kind.model_files(snap), **({serving.COMPILED_FILE: compiled} if compiled else {})},
        predict_fn="predict" if numeric_target else "predict_proba",
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = provenance.digest(registry.download_version(version.version, Path(tmp)))
    headline = {"holdout_r2": metrics.r2} if numeric_target else {"holdout_accuracy": metrics.accuracy}
    registry.tag_version(
        version.version, {**headline, "task": kind.name, "task_type": snap.task_type, provenance.DIGEST_TAG: files}
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


def _compile(pipeline: Any, text_columns: list[str] | None, holdout: Any) -> tuple[bytes | None, dict[str, Any]]:
    """The Pipeline compiled for serving, if skl2onnx converts it and it reproduces the holdout's probabilities.

    A Pipeline that does not compile is still registered: it is served through scikit-learn."""
    try:
        graph = serving.compile_pipeline(pipeline, text_columns)
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
    kind = kinds.named(snap.task)
    numeric_target = snap.task_type == regression.REGRESSION

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
    behaviour = kind.behaviour(challenger, snap, params)
    champion_info = registry.by_alias(CHAMPION)
    if champion_info is not None and kinds.named(champion_info.tags.get("task")) is not kind:
        raise DataValidationError(
            f"the champion of {registry.config.model_name} is an {champion_info.tags.get('task', 'image')} model and "
            f"this snapshot is {kind.name} data: give each task kind its own MODEL_NAME"
        )
    champion_metrics: Any = None
    champion_behaviour: dict[str, object] | None = None
    unverified = ""
    if champion_info is not None and champion_info.version != version:
        try:
            champion, _, _ = registry.load_verified(
                champion_info.version,
                cache_dir / f"v{champion_info.version}",
                provenance.recorded(db, name, champion_info.version),
            )
            champion_metrics = holdout_metrics(champion)
            champion_behaviour = kind.behaviour(champion, snap, params)
        except provenance.ProvenanceError as exc:  # judged against the floor alone, and said so
            unverified = f" (the champion was not compared: {exc})"
            log.warning("champion not loaded: %s", exc)
    decision = decide_promotion(
        challenger_metrics, champion_metrics, behaviour, params.promotion, baseline, metric, champion_behaviour
    )
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
        "champion_behaviour": champion_behaviour,
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
