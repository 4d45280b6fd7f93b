"""Task body of the score_batch DAG: score an uploaded file with the champion and log every row."""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np

from config.settings import Settings
from model import batch as batches
from model import blobs, prediction, provenance
from model.errors import DataValidationError
from model.kinds import Limits
from model.registry import CHAMPION
from model.statistics import rollup_increments
from model.store import BATCHES, apply_rollups, insert_predictions, update_batch
from plugins.mlops_platform.hooks import PlatformMongoHook, PlatformRegistryHook

log = logging.getLogger(__name__)
CHUNK_ROWS = 5_000
PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"


class BatchRejected(Exception):
    """The batch itself is unusable (bad file, no champion, wrong kind): retrying cannot help."""


def score(batch_id: str, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Score batch `batch_id` with the current champion; idempotent, so a retried run repeats nothing."""
    settings = settings or Settings()
    with PlatformMongoHook(settings) as mongo:
        db = mongo.get_conn()
        job = db[BATCHES].find_one({"_id": batch_id})
        if job is None:
            raise BatchRejected(f"no batch with id {batch_id}")
        update_batch(db, batch_id, status=RUNNING, airflow_run_id=run_id, started_at=datetime.now(UTC), error=None)
        registry = PlatformRegistryHook(settings).get_conn()
        champion = registry.by_alias(CHAMPION)
        if champion is None:
            raise BatchRejected(f"model {settings.model_name} has no champion to score with")
        dst = settings.model_cache_dir / "batch" / f"v{champion.version}"
        try:
            model = provenance.load_promoted(registry, db, champion.version, dst, "batch")
        except provenance.ProvenanceError as exc:
            raise BatchRejected(str(exc)) from exc
        kind = model.kind
        if job.get("format") not in kind.batch_formats:
            raise BatchRejected(
                f"the champion is a {kind.name} model and scores {kind.batch_files}, not a {job.get('format')} file"
            )
        try:
            data = blobs.read_batch_input(db, batch_id, job["format"])
        except blobs.StoredFileMissing as exc:
            raise BatchRejected(f"{exc}: it expired (BATCH_RETENTION_DAYS); submit the file again") from exc
        except blobs.StoredFileCorrupt as exc:
            raise BatchRejected(f"{exc}; submit the file again") from exc
        limits = Limits(
            max_pixels=settings.max_image_pixels,
            max_image_bytes=settings.max_upload_bytes,
            max_batch_images=settings.max_batch_images,
        )
        try:
            inputs = kind.read_batch(data, job["format"], model.spec, limits)
        except DataValidationError as exc:
            raise BatchRejected(f"the uploaded file was rejected: {exc}") from exc
        engine = model.info["serving"]
        log.info("batch %s: scoring with %s (%s)", batch_id, engine["engine"], engine.get("reason") or "checked")
        n = len(inputs.rows)
        update_batch(db, batch_id, rows=n, model_version=champion.version, model_name=settings.model_name)
        base = {
            "kind": "prediction",
            "ts": job["created_at"],  # the time its ids carry: a retried run writes the same records
            "model_name": settings.model_name,
            "model_version": champion.version,
            "source": "batch",
            "batch_id": batch_id,
            "latency_ms": None,
        }
        with tempfile.TemporaryFile() as result:
            with _Writer(db, batch_id, n) as writer:
                outputs = _score_chunks(model, inputs, job["created_at"], base, writer, result)
            result_bytes = result.tell()
            result.seek(0)
            blobs.store_batch_result(db, batch_id, result)
        summary = {
            "status": SUCCEEDED,
            "rows": n,
            "scored": writer.stored,  # every chunk is in: the writer has finished
            "model_version": champion.version,
            "result_bytes": result_bytes,
            "finished_at": datetime.now(UTC),
            **_summary(outputs),
        }
        update_batch(db, batch_id, **summary)
        return {k: v for k, v in summary.items() if k != "finished_at"}


def _score_chunks(
    model: Any, inputs: Any, created_at: datetime, base: dict[str, Any], writer: _Writer, result: IO[bytes]
) -> list[dict[str, Any]]:
    """Score the rows a chunk at a time; each chunk's records go to the writer (MongoDB stores them
    while the next chunk is scored) and its rows to the result file. Returns every row's answer."""
    outputs: list[dict[str, Any]] = []
    n = len(inputs.rows)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        chunk = inputs.X.iloc[start:stop] if hasattr(inputs.X, "iloc") else inputs.X[start:stop]
        answered = prediction.answer(model, chunk).outputs
        keys = inputs.keys[start:stop]
        ids = batches.prediction_ids(base["batch_id"], created_at, stop - start, start)
        writer.write(start, prediction.documents(base, ids, inputs.rows[start:stop], answered, {"row": keys}))
        columns = None if inputs.columns is None else inputs.columns.iloc[start:stop]
        batches.result_table(keys, ids, answered, columns).to_csv(result, index=False, header=start == 0)
        outputs.extend(answered)
    return outputs


def _summary(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the batch document says of its answers: label counts, or the predicted values' range."""
    if outputs and "value" in outputs[0]:
        values = np.asarray([o["value"] for o in outputs], dtype=np.float64)
        return {"values": {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}}
    labels = np.asarray([str(o["label"]) for o in outputs], dtype=str)
    return {"label_counts": {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}}


class _Writer:
    """Stores a batch's chunks on two threads while the caller scores the next chunk.

    Chunk k goes to thread k % 2, each with its own connection, so the server always has a chunk to
    store while the other is being sent (one thread left it idle while the driver encoded: 7% fewer
    rows/s). At most two chunks wait per thread (memory stays bounded); the first failure is raised
    to the caller, at the next write or at the end. A chunk is counted once, all of it, even when a
    retried run finds its records stored already: each thread applies its chunks' rollups in order
    under its own writer name, keyed by the chunk's first row (`apply_rollups`).
    """

    THREADS = 2

    def __init__(self, db: Any, batch_id: str, rows: int) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.db, self.batch_id, self.rows = db, batch_id, rows
        self.stored = 0
        self._lock = threading.Lock()
        self._pools = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{batch_id[:8]}-{i}")
            for i in range(self.THREADS)
        ]
        self._pending: list[Any] = []

    def write(self, start: int, records: list[dict[str, Any]]) -> None:
        while len(self._pending) >= 2 * self.THREADS:
            self._pending.pop(0).result()
        lane = start // CHUNK_ROWS % self.THREADS
        self._pending.append(self._pools[lane].submit(self._store, lane, start, records))

    def _store(self, lane: int, start: int, records: list[dict[str, Any]]) -> None:
        new, _ = insert_predictions(self.db, records)
        writer = f"batch-{self.batch_id}" + (f"-{lane}" if lane else "")
        apply_rollups(self.db, rollup_increments(records), writer, start + 1)
        with self._lock:
            self.stored += len(records)
            update_batch(self.db, self.batch_id, scored=self.stored)
        log.info("batch %s: %d/%d rows scored (%d new in MongoDB)", self.batch_id, self.stored, self.rows, new)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            for pool in self._pools:
                pool.shutdown(wait=True, cancel_futures=True)


def mark_failed(batch_id: str, reason: str, settings: Settings | None = None) -> None:
    """Record why a batch failed; called when the run gives up, so a batch never stays pending."""
    settings = settings or Settings()
    for attempt in range(3):
        try:
            with PlatformMongoHook(settings) as mongo:
                update_batch(
                    mongo.get_conn(), batch_id, status=FAILED, error=reason[:2000], finished_at=datetime.now(UTC)
                )
                return
        except Exception as exc:  # noqa: BLE001 - retried, then logged: the run is already failing
            log.warning("could not mark batch %s failed (attempt %d): %s", batch_id, attempt + 1, exc)
            time.sleep(2)
    log.error("batch %s failed (%s) but MongoDB could not be told; GET /batches asks Airflow instead", batch_id, reason)


def run_from_context() -> dict[str, Any]:
    """The score task: the batch id comes from the run's conf; a rejected batch fails without retries."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    context = get_current_context()
    batch_id = (context["dag_run"].conf or {}).get("batch_id")
    if not batch_id:
        raise AirflowFailException('score_batch needs conf {"batch_id": "<id from POST /batches>"}')
    try:
        return score(str(batch_id), context["dag_run"].run_id)
    except BatchRejected as exc:
        raise AirflowFailException(str(exc)) from exc


def on_failure(context: dict[str, Any]) -> None:
    """Task failure callback (after the last retry): the batch ends `failed` with the reason."""
    batch_id = (context["dag_run"].conf or {}).get("batch_id")
    if not batch_id:
        return
    error = context.get("exception")
    reason = str(error) if type(error).__name__ == "AirflowFailException" else f"{type(error).__name__}: {error}"
    mark_failed(str(batch_id), reason or "the score_batch run failed: see its task log")
