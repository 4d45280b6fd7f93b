"""What every platform DAG shares: a fixed start date and the retry policy of its tasks."""

from datetime import datetime, timedelta

START_DATE = datetime(2026, 1, 1)
LIFECYCLE_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=10)}
# a monitoring breach is not transient; one retry covers a blip in a service it calls
MONITORING_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=30)}
# a transient MongoDB or MLflow blip is retried; a bad file fails at once (AirflowFailException)
BATCH_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=10)}
