"""train_model: fit the Pipeline on the newest snapshot and register it as the challenger."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task

from plugins.mlops_platform.assets import CANDIDATE_MODEL, SNAPSHOT
from plugins.mlops_platform.dag_defaults import LIFECYCLE_ARGS, START_DATE


@dag(
    dag_id="train_model",
    schedule=[SNAPSHOT],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=LIFECYCLE_ARGS,
    tags=["mlops", "lifecycle"],
    doc_md="""
    Triggered by the `data_snapshot` Asset (or by hand: conf `{"hash": <snapshot digest>}`, else the
    snapshot stored last), read from MongoDB GridFS, so any worker can run it. Trains the estimator
    from `config/params.yaml`, logs params, metrics, the
    confusion matrix, the dataset and the model to MLflow, registers a new version with alias
    `challenger`, and emits the `candidate_model` Asset, which triggers `validate_model`.
    """,
)
def train_model() -> None:
    @task(outlets=[CANDIDATE_MODEL])
    def train() -> dict[str, Any]:
        from config.settings import Settings
        from plugins.mlops_platform import tasks

        context = get_current_context()
        snapshot = tasks.upstream(context, ("hash",)) or tasks.latest_snapshot(Settings())
        trained = tasks.train(snapshot)
        context["outlet_events"][CANDIDATE_MODEL].extra = trained
        return trained

    train()


train_model()
