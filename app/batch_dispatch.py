"""Starts score_batch runs for accepted batches, and keeps trying while Airflow is unreachable.

`POST /batches` stores the upload and the batch document first, then asks Airflow once. If Airflow
does not answer, the batch stays `pending` and this worker's dispatcher thread retries; a batch
Airflow has not accepted within `give_up_seconds` ends `failed` with the last error, so no batch
waits forever. Workers claim a retry with a conditional update, so only one of them triggers it, and
Airflow refuses a second run with the same run id anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import PyMongoError

from model.store import BATCHES, update_batch

log = logging.getLogger(__name__)
Trigger = Callable[[dict[str, Any], str], str]


class BatchDispatcher:
    def __init__(
        self,
        db_factory: Callable[[], Database],
        trigger: Callable[[], Trigger],
        retry_seconds: float = 15.0,
        give_up_seconds: float = 600.0,
    ) -> None:
        self._db_factory = db_factory
        self._trigger = trigger  # looked up at each call, so the app (or a test) can replace it
        self.retry = timedelta(seconds=retry_seconds)
        self.give_up = timedelta(seconds=give_up_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def dispatch(self, doc: dict[str, Any]) -> str | None:
        """Ask Airflow to run score_batch for this batch; None (and a retry later) when it cannot."""
        db = self._db_factory()
        try:
            self._trigger()({"batch_id": doc["_id"]}, doc["airflow_run_id"])
        except Exception as exc:  # Airflow down, refusing, or misconfigured: retried until give_up
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            attempts = int(doc.get("trigger_attempts", 0)) + 1
            log.warning("batch %s: Airflow did not accept the run (attempt %d): %s", doc["_id"], attempts, error)
            update_batch(db, doc["_id"], trigger_error=error, trigger_attempts=attempts,
                         next_attempt_at=datetime.now(UTC) + self.retry)  # fmt: skip
            return error
        update_batch(db, doc["_id"], triggered_at=datetime.now(UTC), trigger_error=None)
        return None

    def sweep(self) -> int:
        """Retry due batches that Airflow has not accepted yet; fail those past the deadline."""
        db = self._db_factory()
        now = datetime.now(UTC)
        due = (
            db[BATCHES]
            .find({"status": "pending", "triggered_at": None, "next_attempt_at": {"$lte": now}}, limit=50)
            .sort("created_at", 1)
        )
        handled = 0
        for doc in list(due):
            claimed = db[BATCHES].find_one_and_update(
                {
                    "_id": doc["_id"],
                    "status": "pending",
                    "triggered_at": None,
                    "next_attempt_at": doc["next_attempt_at"],
                },
                {"$set": {"next_attempt_at": now + self.retry}},
            )
            if claimed is None:
                continue  # another worker took it
            handled += 1
            if now - claimed["created_at"] > self.give_up:
                reason = (
                    f"Airflow did not accept the score_batch run within {self.give_up.total_seconds():.0f} s "
                    f"(last error: {claimed.get('trigger_error')}); submit the file again"
                )
                update_batch(db, doc["_id"], status="failed", error=reason, finished_at=now)
                log.error("batch %s failed: %s", doc["_id"], reason)
            else:
                self.dispatch(claimed)
        return handled

    def _run(self) -> None:
        wait = min(self.retry.total_seconds(), 5.0)
        while not self._stop.wait(wait):
            try:
                self.sweep()
            except PyMongoError as exc:
                log.info("batch dispatcher: MongoDB unavailable, retrying later: %s", exc)
