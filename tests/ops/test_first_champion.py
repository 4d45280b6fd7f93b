"""How `make up` gets its first champion: it follows the daily chain Airflow starts, or runs ml_pipeline.

Pure decision logic against a stand-in for the few REST calls (ops/airflow_api.py); the real Airflow
behaviour it relies on (a never-run, unpaused daily DAG gets its latest interval scheduled at once) is
what tests/cluster/test_cluster.py drives on a real cluster.
"""

from __future__ import annotations

from typing import Any

import pytest

from ops import stack
from ops.services import ServiceError


class FakeAirflow:
    """Runs by DAG, oldest first; each is {"dag_run_id", "state", "run_after", "start_date"}."""

    def __init__(self, runs: dict[str, list[dict[str, Any]]], paused: bool = False) -> None:
        self.runs = runs
        self.paused = paused
        self.waited: list[tuple[str, str]] = []

    def wait_for_dag(self, dag_id: str, timeout: float) -> None:
        pass

    def latest_run(self, dag_id: str) -> dict[str, Any] | None:
        runs = self.runs.get(dag_id) or []
        return runs[-1] if runs else None

    def is_paused(self, dag_id: str) -> bool:
        return self.paused

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return next(r for r in self.runs[dag_id] if r["dag_run_id"] == run_id)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, progress: Any = None) -> str:
        self.waited.append((dag_id, run_id))
        found = self.run(dag_id, run_id)
        if found["state"] in ("queued", "running"):  # it finishes while we wait
            found["state"] = "success"
        return str(found["state"])


def run(run_id: str, state: str, at: str) -> dict[str, Any]:
    return {"dag_run_id": run_id, "state": state, "run_after": at, "start_date": at}


def test_a_first_start_follows_the_run_airflow_started(monkeypatch):
    monkeypatch.setattr(stack.time, "sleep", lambda _: None)
    api = FakeAirflow(
        {
            "ingest_data": [run("scheduled__today", "running", "2026-12-02T17:11:20Z")],
            "train_model": [
                run("older", "success", "2026-12-01T10:00:00Z"),
                run("asset_triggered__1", "success", "2026-12-02T17:12:04Z"),
            ],
            "validate_model": [run("asset_triggered__2", "success", "2026-12-02T17:13:25Z")],
        }
    )
    assert stack._first_daily_run(api) == "scheduled__today"  # type: ignore[arg-type]
    stack._follow_chain(api, "scheduled__today", timeout=60)  # type: ignore[arg-type]
    assert api.waited == [
        ("ingest_data", "scheduled__today"),
        ("train_model", "asset_triggered__1"),  # not the older run
        ("validate_model", "asset_triggered__2"),
    ]


def test_no_run_to_follow_when_the_dag_ran_before_or_is_paused(monkeypatch):
    monkeypatch.setattr(stack.time, "sleep", lambda _: None)
    ran_before = FakeAirflow({"ingest_data": [run("scheduled__yesterday", "success", "2026-12-01T00:00:00Z")]})
    assert stack._first_daily_run(ran_before) is None  # type: ignore[arg-type]
    paused = FakeAirflow({}, paused=True)
    assert stack._first_daily_run(paused) is None  # type: ignore[arg-type]


def test_a_failed_link_of_the_chain_is_reported(monkeypatch):
    monkeypatch.setattr(stack.time, "sleep", lambda _: None)
    api = FakeAirflow(
        {
            "ingest_data": [run("scheduled__today", "success", "2026-12-02T17:11:20Z")],
            "train_model": [run("asset_triggered__1", "failed", "2026-12-02T17:12:04Z")],
        }
    )
    with pytest.raises(ServiceError, match="train_model run asset_triggered__1 ended failed"):
        stack._follow_chain(api, "scheduled__today", timeout=60)  # type: ignore[arg-type]
