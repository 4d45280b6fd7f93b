"""Prometheus metrics at /metrics, for the whole service however many gunicorn workers answer.

Under gunicorn, prometheus_client's multiprocess mode is on (app/gunicorn.conf.py points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker starts): every worker writes its
values to files there, and a scrape, whichever worker answers it, reads them all. Counters and
histograms are summed over workers, alive or dead; gauges say how they combine below. Without
gunicorn (tests, a Flask dev server) the registry is this process's own.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from app.model_manager import ModelManager
    from app.prediction_log import PredictionLog

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    def __init__(self) -> None:
        # In multiprocess mode values live in the directory's files, and this registry only names them.
        self.registry = CollectorRegistry()
        r = self.registry
        self._observed: tuple[Any, ...] | None = None  # observe_state's last state
        self.requests = Counter("mlops_http_requests", "HTTP requests", ["route", "status"], registry=r)
        self.request_seconds = Histogram(
            "mlops_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "mlops_request_latency_seconds",
            "Prediction latency inside the app (parse, predict, log), by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter("mlops_predictions", "Predictions served", ["label", "model_version"], registry=r)
        self.queue_depth = Gauge(
            "mlops_log_queue_depth", "Records waiting in memory for the log writer", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.outbox_bytes = Gauge(
            "mlops_log_outbox_bytes", "Bytes waiting in the durable outbox", registry=r, multiprocess_mode="livesum"
        )
        self.writer_alive = Gauge(
            "mlops_log_writer_alive", "Workers whose prediction log writer runs", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.rollups_pending = Gauge(
            "mlops_log_rollups_pending", "Rollup updates waiting for MongoDB", registry=r, multiprocess_mode="livesum"
        )
        self.model_version = Gauge(
            "mlops_model_version", "Version being served (the highest over workers)", ["model"], registry=r,
            multiprocess_mode="max",
        )  # fmt: skip
        self.model_load_seconds = Gauge(
            "mlops_model_load_seconds", "Seconds the served model took to download, verify and load", registry=r,
            multiprocess_mode="max",
        )  # fmt: skip
        self.last_poll = Gauge(
            "mlops_champion_last_poll_timestamp_seconds",
            "When a worker last asked the registry for the champion (unix time; the latest over workers)",
            registry=r,
            multiprocess_mode="max",
        )

    def observe_state(self, plog: PredictionLog, models: ModelManager) -> None:
        """The gauges from this worker's prediction log and model manager (called after each request).

        They are written only when the state changed since the last call: each write takes a lock and
        writes this worker's mmapped file, and the seven took about 2% of a prediction's time (py-spy)."""
        current = models.current
        model = None if current is None else (current.name, current.version, current.info.get("load_seconds"))
        state = (plog.depth(), plog.outbox_bytes, plog.alive(), plog.pending_rollups(), model, models.last_check_at)
        if state == self._observed:
            return
        self._observed = state
        self.queue_depth.set(state[0])
        self.outbox_bytes.set(state[1])
        self.writer_alive.set(1 if state[2] else 0)
        self.rollups_pending.set(state[3])
        if model is not None:
            self.model_version.labels(model[0]).set(float(model[1]))
            self.model_load_seconds.set(float(model[2] or 0.0))
        if models.last_check_at is not None:
            self.last_poll.set(models.last_check_at)

    def render(self) -> bytes:
        if not MULTIPROCESS:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
