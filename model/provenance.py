"""Provenance: a model's files are loaded only if their digest is one the platform itself recorded.

Loading a scikit-learn model unpickles it, and unpickling runs code. Whoever can write to the MLflow
server could register a version, or move `champion` to it, and so run code in every process that
loads it. So the registry is not trusted to say what to load:

- training downloads the version it just registered and records the digest of those files in
  MongoDB `model_events` (`registered`);
- the gate (`validate_model`) verifies the challenger's files against that digest before it loads
  them, and on promotion records the digest again (`promoted`) and tags the version `model_digest`;
- the app, batch scoring, monitoring and the gate's champion comparison load a version only when its
  downloaded files match the digest of a `promoted` event. Otherwise they load nothing, keep what
  they have, and say why.

The version tag is for people reading MLflow; the check reads MongoDB, which the registry's writers
cannot write.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pymongo.database import Database

from model.errors import ModelError
from model.registry import Registry
from model.store import MODEL_EVENTS, record_event

if TYPE_CHECKING:
    from model.champion import Model

DIGEST_TAG = "model_digest"
REGISTERED, PROMOTED = "registered", "promoted"


class ProvenanceError(ModelError):
    """A model's files do not match a digest the platform recorded, or none was recorded."""


def digest(directory: Path) -> str:
    """sha256 over every file under `directory`: its relative path, size and content, in path order."""
    outer = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        inner = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                inner.update(block)
        outer.update(path.relative_to(directory).as_posix().encode() + b"\0")
        outer.update(str(path.stat().st_size).encode() + b"\0" + inner.digest())
    return "sha256:" + outer.hexdigest()


def recorded(db: Database, model_name: str, version: str, kind: str = PROMOTED) -> str | None:
    """The digest the platform recorded for this version (`registered` by training, `promoted` by the gate)."""
    event = db[MODEL_EVENTS].find_one(
        {"model_name": model_name, "version": str(version), "outcome": kind, "digest": {"$type": "string"}},
        {"digest": 1},
        sort=[("created_at", -1)],
    )
    return event["digest"] if event else None


def verify(directory: Path, expected: str | None, what: str) -> str:
    """Raise ProvenanceError unless the files under `directory` have the digest `expected`."""
    if expected is None:
        raise ProvenanceError(f"{what}: no digest was recorded for it by the platform, so it is not loaded")
    actual = digest(directory)
    if actual != expected:
        raise ProvenanceError(
            f"{what}: its files do not match the recorded digest ({actual[:19]}... != {expected[:19]}...)"
        )
    return actual


def refuse(db: Database, model_name: str, version: str, loader: str, reason: str) -> None:
    """Record that `loader` (app, batch, monitor) refused to load a version, and why."""
    record_event(
        db,
        "provenance_refused",
        model_name=model_name,
        version=str(version),
        loader=loader,
        outcome="refused",
        reason=reason,
    )


def load_promoted(registry: Registry, db: Database, version: str, dst: Path, loader: str) -> Model:
    """The one way batch scoring and monitoring load a champion: downloaded, verified, then opened
    (model/champion.py, as the app does). A version without a matching `promoted` digest raises
    ProvenanceError and is recorded as refused.
    """
    from model.champion import open_model

    name = registry.config.model_name
    path = registry.download_version(version, dst)
    try:
        files = verify(path, recorded(db, name, version), f"{name} version {version}")
    except ProvenanceError as exc:
        refuse(db, name, version, loader, str(exc))
        raise
    return open_model(path, name, version, {"name": name, "version": version, "digest": files, "path": str(path)})
