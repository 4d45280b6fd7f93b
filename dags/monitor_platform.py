"""monitor_platform: the daily check of MLflow, the champion, the app, its statistics and data drift."""

from __future__ import annotations

from typing import Any

from airflow.sdk import TriggerRule, dag, task

from plugins.mlops_platform.assets import RETRAIN_REQUEST
from plugins.mlops_platform.dag_defaults import MONITORING_ARGS, START_DATE


@dag(
    dag_id="monitor_platform",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=MONITORING_ARGS,
    tags=["mlops", "monitoring"],
    doc_md="""
    One task per check, each failing on its own so the grid shows what broke:
    `mlflow` (registry reachable), `champion` (loads, reproduces its input example, matches the app's
    /model-info), `app` (/health 200, /statistics answers), `statistics` (24 h volume, error rate,
    latency p95, feedback accuracy from MongoDB rollups), `drift` (PSI per feature against the
    champion's training profile, chi-square on predicted labels, low-confidence share).
    `report` logs everything to the MLflow experiment `monitoring` (one run per logical date) and
    to MongoDB `monitoring_reports`; with `RETRAIN_ON_ALERT=true` an alert emits the `retrain_request`
    Asset, which `ingest_data` is scheduled on; `decide` fails the run naming every breach.
    Thresholds: `monitoring` in config/params.yaml.
    """,
)
def monitor_platform() -> None:
    @task(task_id="mlflow")
    def check_mlflow() -> dict[str, Any]:
        from plugins.mlops_platform import monitor

        return monitor.run_check("mlflow", monitor.check_mlflow)

    @task(task_id="champion")
    def check_champion() -> dict[str, Any]:
        from plugins.mlops_platform import monitor

        return monitor.run_check("champion", monitor.check_champion)

    @task(task_id="app")
    def check_app() -> dict[str, Any]:
        from plugins.mlops_platform import monitor

        return monitor.run_check("app", monitor.check_app)

    @task(task_id="statistics")
    def statistics() -> dict[str, Any]:
        from plugins.mlops_platform import monitor

        return monitor.run_check("statistics", monitor.collect_statistics)

    @task(task_id="drift")
    def drift() -> dict[str, Any]:
        from plugins.mlops_platform import monitor

        return monitor.run_check("drift", monitor.check_drift)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report() -> dict[str, Any]:
        from plugins.mlops_platform import monitor

        return monitor.report_from_context()

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[RETRAIN_REQUEST])
    def request_retraining() -> None:
        """On an alert with RETRAIN_ON_ALERT=true, an event on the asset ingest_data is scheduled on
        (Airflow's own mechanism: no REST call, no password in a task); otherwise skipped, no event."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowSkipException

        from plugins.mlops_platform import monitor

        if not monitor.wants_retraining(get_current_context()["ti"].xcom_pull(task_ids="report")):
            raise AirflowSkipException("no alert, or RETRAIN_ON_ALERT is off")

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def decide() -> dict[str, Any]:
        from airflow.sdk import get_current_context

        from plugins.mlops_platform import monitor

        return monitor.decide(get_current_context()["ti"].xcom_pull(task_ids="report"))

    summary = report()
    [check_mlflow(), check_champion(), check_app(), statistics(), drift()] >> summary
    summary >> request_retraining() >> decide()


monitor_platform()
