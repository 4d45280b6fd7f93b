"""The lifecycle steps (ingest, train, validate and promote, roll back), composed from pure parts and adapters.

Each step takes its adapters as arguments and returns a small JSON-able dict, so a DAG task or the
CLI can call it in a line or two.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pymongo.database import Database

from model import data as datasets
from model.errors import DataValidationError, NothingToRollBack
from model.evaluate import Metrics, behavioural_checks, evaluate
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
from model.store import load_feedback, record_event
from model.train import build_pipeline, train

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 5


def ingest(params: Params, data_dir: Path, db: Database | None) -> dict[str, Any]:
    """Load the configured source (+ feedback), validate it, and write a content-hashed snapshot."""
    p = params.data
    if p.source == "digits":
        dataset = datasets.load_digits_dataset()
    else:
        if p.image_folder is None:
            raise DataValidationError("data.source is image_folder but data.image_folder is not set")
        dataset = datasets.load_image_folder(p.image_folder)
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
    }
    path = write_snapshot(data_dir, digest, train_set, holdout, profile, manifest)
    log.info("snapshot %s: %d rows (%d from feedback)", digest, len(dataset), feedback_rows)
    return {"hash": digest, "path": str(path), "rows": len(dataset), "feedback_rows": feedback_rows}


def train_and_register(params: Params, snapshot_path: Path, registry: Registry) -> dict[str, Any]:
    """Fit the configured Pipeline on the snapshot, log everything to MLflow, register it as challenger."""
    snap = read_snapshot(snapshot_path)
    labels = params.data.labels
    pipeline = train(
        build_pipeline(params.train, params.data.seed),
        snap.train.X,
        snap.train.y,
        augment_shifts=params.train.augment_shifts,
    )
    metrics = evaluate(pipeline, snap.holdout.X, snap.holdout.y, labels)
    example = snap.holdout.X[:EXAMPLE_ROWS]
    version = registry.log_and_register(
        pipeline,
        params={
            "estimator": params.train.estimator,
            **{f"hp_{k}": v for k, v in params.train.hyperparameters.items()},
            "augment_shifts": params.train.augment_shifts,
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
        figures={"confusion_matrix.png": confusion_figure(metrics, labels)},
        artifacts={
            PROFILE_ARTIFACT: snap.profile,
            "snapshot_manifest.json": snap.manifest,
            "holdout_metrics.json": metrics.as_dict(),
            EXAMPLE_PREDICTIONS_ARTIFACT: {"labels": pipeline.predict(example).tolist()},
        },
    )
    registry.tag_version(version.version, {"holdout_accuracy": metrics.accuracy})
    registry.set_alias(CHALLENGER, version.version)
    return {"version": version.version, "run_id": version.run_id, "hash": snap.hash, "accuracy": metrics.accuracy}


def validate_and_promote(
    params: Params, snapshot_path: Path, version: str, registry: Registry, db: Database, cache_dir: Path
) -> dict[str, Any]:
    """Evaluate challenger and champion on the same holdout; move `champion` only if the gate passes."""
    snap = read_snapshot(snapshot_path)
    labels = params.data.labels
    challenger = registry.load_model(version, cache_dir / f"v{version}")
    challenger_metrics = evaluate(challenger, snap.holdout.X, snap.holdout.y, labels)
    behaviour = behavioural_checks(
        challenger, snap.holdout.X[:EXAMPLE_ROWS], snap.holdout.X, snap.holdout.y, params.promotion.max_shift_drop
    )
    champion_info = registry.by_alias(CHAMPION)
    champion_metrics: Metrics | None = None
    if champion_info is not None and champion_info.version != version:
        champion = registry.load_model(champion_info.version, cache_dir / f"v{champion_info.version}")
        champion_metrics = evaluate(champion, snap.holdout.X, snap.holdout.y, labels)
    decision = decide_promotion(challenger_metrics, champion_metrics, behaviour, params.promotion)
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
        "behaviour": behaviour,
        "thresholds": params.promotion.model_dump(),
        "outcome": outcome,
        "reason": decision.reason,
    }
    registry.tag_version(
        version,
        {
            "validation_outcome": outcome,
            "validation_reason": decision.reason,
            "validation_dataset_hash": snap.hash,
            "validation_accuracy": challenger_metrics.accuracy,
            "validation_champion_accuracy": champion_metrics.accuracy if champion_metrics else None,
            "validation_thresholds": params.promotion.model_dump(),
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


def confusion_figure(metrics: Metrics, labels: list[int]) -> Any:
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
