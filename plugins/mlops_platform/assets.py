"""Assets that chain the DAGs: a new snapshot triggers training, a new model validation, and a
monitoring alert (with RETRAIN_ON_ALERT) a new ingest."""

from airflow.sdk import Asset

SNAPSHOT = Asset(name="data_snapshot", uri="file:///mlops/data_snapshot")
CANDIDATE_MODEL = Asset(name="candidate_model", uri="file:///mlops/candidate_model")
RETRAIN_REQUEST = Asset(name="retrain_request", uri="file:///mlops/retrain_request")
