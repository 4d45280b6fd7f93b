"""ingest_data: validate the configured data (plus feedback) into a content-hashed snapshot."""

from __future__ import annotations

from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

from plugins.mlops_platform.assets import RETRAIN_REQUEST, SNAPSHOT
from plugins.mlops_platform.dag_defaults import LIFECYCLE_ARGS, START_DATE


@dag(
    dag_id="ingest_data",
    # daily, and whenever monitoring asks for retraining (the retrain_request Asset)
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=[RETRAIN_REQUEST]),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=LIFECYCLE_ARGS,
    tags=["mlops", "lifecycle"],
    doc_md="""
    Loads the source named in `config/params.yaml` (digits or an image folder) and any feedback
    labels from MongoDB, validates them, and stores an immutable snapshot named by its content hash
    in MongoDB GridFS. Emits the `data_snapshot` Asset (its extra carries the digest, `hash`), which
    triggers `train_model`.
    Optional conf: `{"params": {"train": {...}, "data": {...}}}` overrides sections for this chain.
    """,
)
def ingest_data() -> None:
    @task(outlets=[SNAPSHOT])
    def ingest() -> dict[str, Any]:
        from plugins.mlops_platform import tasks

        context = get_current_context()
        snapshot = tasks.ingest(context["dag_run"].conf)
        context["outlet_events"][SNAPSHOT].extra = snapshot
        return snapshot

    ingest()


ingest_data()
