"""score_batch: score a file uploaded through POST /batches with the champion, off the request path."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from plugins.mlops_platform.dag_defaults import BATCH_ARGS, START_DATE


def _batch_failed(context: Any) -> None:
    from plugins.mlops_platform import batches

    batches.on_failure(context)


@dag(
    dag_id="score_batch",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=BATCH_ARGS,
    tags=["mlops", "serving"],
    doc_md="""
    Triggered by the app's `POST /batches` through Airflow's REST API with conf `{"batch_id": ...}`.
    Reads the stored upload (CSV/Parquet for a tabular champion, a zip of images for an image one),
    checks it against the model, scores it in chunks, writes every prediction to MongoDB with
    `source: batch` (ids derived from the batch id, so a retry duplicates nothing) and a result CSV;
    the upload and the result are files in MongoDB GridFS (bucket `batch_files`), so any worker can
    run it. The batch document in MongoDB `batches` follows: pending -> running ->
    succeeded | failed (with the reason). A bad file fails at once; other errors are retried.
    """,
)
def score_batch() -> None:
    @task(on_failure_callback=_batch_failed)
    def score() -> dict[str, Any]:
        from plugins.mlops_platform import batches

        return batches.run_from_context()

    score()


score_batch()
