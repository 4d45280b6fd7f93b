"""Every DAG file imports cleanly and follows the house rules."""

import pytest

from config.settings import ROOT

EXPECTED = {
    "ingest_data": {"ingest": set()},
    "train_model": {"train": set()},
    "validate_model": {"validate": set()},
    "ml_pipeline": {"ingest": set(), "train": {"ingest"}, "validate": {"train"}},
    "score_batch": {"score": set()},
    "monitor_platform": {
        "mlflow": set(),
        "champion": set(),
        "app": set(),
        "statistics": set(),
        "drift": set(),
        "report": {"mlflow", "champion", "app", "statistics", "drift"},
        "request_retraining": {"report"},
        "decide": {"request_retraining"},
    },
}


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_shape(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} missing; found {sorted(dagbag.dag_ids)}"
    assert dag.tags, "every DAG has tags"
    assert dag.doc_md, "every DAG documents itself"
    assert not dag.catchup
    graph = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert graph == EXPECTED[dag_id]
    assert all(t.retries >= 1 for t in dag.tasks), "every task retries"


def test_dag_files_are_named_after_their_dag(dagbag):
    for dag_id in EXPECTED:
        assert (ROOT / "dags" / f"{dag_id}.py").exists()


def test_asset_chain(dagbag):
    """ingest_data emits the snapshot that schedules train_model, which emits what schedules validate_model."""
    ingest = dagbag.get_dag("ingest_data").get_task("ingest")
    train = dagbag.get_dag("train_model")
    validate = dagbag.get_dag("validate_model")
    assert [a.name for a in ingest.outlets] == ["data_snapshot"]
    assert "data_snapshot" in str(train.timetable.asset_condition)
    assert [a.name for a in train.get_task("train").outlets] == ["candidate_model"]
    assert "candidate_model" in str(validate.timetable.asset_condition)
