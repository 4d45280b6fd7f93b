"""ml_pipeline: ingest -> train -> validate in one run, for `make up` and for a single manual trigger."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task

from plugins.mlops_platform.dag_defaults import LIFECYCLE_ARGS, START_DATE


@dag(
    dag_id="ml_pipeline",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=LIFECYCLE_ARGS,
    tags=["mlops", "lifecycle"],
    doc_md="""
    The whole lifecycle as one run: the same steps as `ingest_data`, `train_model` and
    `validate_model`, chained by XCom instead of Assets, so a caller can trigger once and wait.
    Accepts the same conf as `ingest_data`.
    """,
)
def ml_pipeline() -> None:
    @task
    def ingest() -> dict[str, Any]:
        from plugins.mlops_platform import tasks

        return tasks.ingest(get_current_context()["dag_run"].conf)

    @task
    def train(snapshot: dict[str, Any]) -> dict[str, Any]:
        from plugins.mlops_platform import tasks

        return tasks.train(snapshot)

    @task
    def validate(trained: dict[str, Any]) -> dict[str, Any]:
        from plugins.mlops_platform import tasks

        return tasks.validate(trained)

    validate(train(ingest()))


ml_pipeline()
