"""validate_model: challenger vs champion on the same holdout; promote only through the gate."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task

from plugins.mlops_platform.assets import CANDIDATE_MODEL
from plugins.mlops_platform.dag_defaults import LIFECYCLE_ARGS, START_DATE


@dag(
    dag_id="validate_model",
    schedule=[CANDIDATE_MODEL],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=LIFECYCLE_ARGS,
    tags=["mlops", "lifecycle"],
    doc_md="""
    Triggered by the `candidate_model` Asset (or by hand with conf
    `{"version": .., "hash": <snapshot digest>}`).
    Evaluates the challenger and the current champion on the snapshot's holdout, runs behavioural
    checks, and moves `champion` (old champion -> `previous`) only when the gate in
    `config/params.yaml` passes. The decision is tagged on the version and stored in MongoDB
    `model_events`. A rejection is a successful run that records the rejection.
    """,
)
def validate_model() -> None:
    @task
    def validate() -> dict[str, Any]:
        from plugins.mlops_platform import tasks

        candidate = tasks.upstream(get_current_context(), ("version", "hash"))
        if candidate is None:
            raise ValueError("no candidate: trigger with conf {'version': ..., 'hash': <snapshot digest>}")
        return tasks.validate(candidate)

    validate()


validate_model()
