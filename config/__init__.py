"""Configuration: `settings.py` (the typed Settings every process builds from the environment and
.env: the app, the DAG tasks, ops/ and the CLI), beside the files it points at (params.yaml,
airflow.cfg, postgres-init.sql)."""
