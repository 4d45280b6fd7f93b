"""Assets that chain the lifecycle DAGs: a new snapshot triggers training, a new model validation."""

from airflow.sdk import Asset

SNAPSHOT = Asset(name="data_snapshot", uri="file:///mlops/data_snapshot")
CANDIDATE_MODEL = Asset(name="candidate_model", uri="file:///mlops/candidate_model")
