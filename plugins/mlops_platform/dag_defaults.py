"""What every platform DAG shares: a fixed start date and the retry policy of its tasks."""

from datetime import datetime, timedelta

from config.settings import Settings

START_DATE = datetime(2026, 1, 1)
_RETRY_DELAY = timedelta(seconds=Settings().task_retry_delay_seconds)  # TASK_RETRY_DELAY_SECONDS
LIFECYCLE_ARGS = {"retries": 2, "retry_delay": _RETRY_DELAY}
# a monitoring breach is not transient; one retry covers a blip in a service it calls
MONITORING_ARGS = {"retries": 1, "retry_delay": 3 * _RETRY_DELAY}
# a transient MongoDB or MLflow blip is retried; a bad file fails at once (AirflowFailException)
BATCH_ARGS = {"retries": 2, "retry_delay": _RETRY_DELAY}
