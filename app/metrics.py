"""Prometheus metrics for one worker process, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlops_http_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "mlops_request_latency_seconds",
            "Prediction request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlops_predictions", "Predictions served", ["label", "model_version"], registry=self.registry
        )
        self.queue_depth = Gauge("mlops_log_queue_depth", "Records waiting for the log writer", registry=self.registry)
        self.outbox_bytes = Gauge(
            "mlops_log_outbox_bytes", "Bytes waiting in the durable outbox", registry=self.registry
        )
        self.model_version = Gauge("mlops_model_version", "Version being served", ["model"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
