-- A second database on the same PostgreSQL for MLflow's backend store (compose only).
CREATE DATABASE mlflow OWNER airflow;
