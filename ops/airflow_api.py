"""The few Airflow 3 REST calls the platform makes: log in, wait for a DAG, trigger a run, follow it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from config.settings import Settings


class AirflowApiError(RuntimeError):
    pass


class AirflowApi:
    """The few Airflow 3 REST calls the stack needs, with a JWT from /auth/token."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.airflow_url.rstrip("/")
        response = requests.post(
            f"{self.base}/auth/token",
            json={
                "username": settings.airflow_admin_user,
                "password": settings.airflow_admin_password.get_secret_value(),
            },
            timeout=10,
        )
        if response.status_code not in (200, 201):
            raise AirflowApiError(
                f"Airflow login failed (HTTP {response.status_code}): check AIRFLOW_ADMIN_USER/PASSWORD"
            )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def wait_for_dag(self, dag_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.session.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=10).status_code == 200:
                return
            time.sleep(2)
        raise AirflowApiError(
            f"Airflow has not parsed DAG {dag_id} after {timeout:.0f}s; check `airflow dags list-import-errors`"
        )

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        response = self.session.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=10)
        if response.status_code == 409 and run_id is not None:
            return run_id  # an earlier attempt got through even though its answer was lost
        if response.status_code not in (200, 201):
            raise AirflowApiError(f"triggering {dag_id} failed (HTTP {response.status_code}): {response.text[:300]}")
        return str(response.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """queued | running | success | failed, or None when Airflow has no such run."""
        run = self.run(dag_id, run_id)
        return None if not run else str(run.get("state"))

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run's fields (state, run_after, start_date, end_date, ...); empty when Airflow has no such run."""
        response = self.session.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=10)
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            raise AirflowApiError(f"reading {dag_id} run {run_id} failed (HTTP {response.status_code})")
        return dict(response.json())

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float, progress: Callable[[str, str], None] | None = None
    ) -> str:
        deadline = time.monotonic() + timeout
        shown: dict[str, str] = {}
        while time.monotonic() < deadline:
            run = self.session.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=10).json()
            tis = self.session.get(
                f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", timeout=10
            ).json()
            for ti in tis.get("task_instances", []):
                state = str(ti.get("state"))
                if shown.get(ti["task_id"]) != state:
                    shown[ti["task_id"]] = state
                    if progress is not None:
                        progress(ti["task_id"], state)
            if run.get("state") in ("success", "failed"):
                return str(run["state"])
            time.sleep(2)
        raise AirflowApiError(f"{dag_id} run {run_id} did not finish within {timeout:.0f}s")

    def latest_run(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's most recent run (run_id, state, run_after, end_date, ...), or None if it has none."""
        response = self.session.get(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": "1"}, timeout=10
        )
        if response.status_code != 200:
            raise AirflowApiError(f"listing {dag_id} runs failed (HTTP {response.status_code}): {response.text[:300]}")
        runs = response.json().get("dag_runs", [])
        return dict(runs[0]) if runs else None

    def is_paused(self, dag_id: str) -> bool:
        response = self.session.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=10)
        if response.status_code != 200:
            raise AirflowApiError(f"reading DAG {dag_id} failed (HTTP {response.status_code})")
        return bool(response.json().get("is_paused"))
