# One image for Airflow (official base), the MLflow server and the app: the same pinned requirements.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root requirements.txt /opt/mlops/requirements.txt
RUN pip install --no-cache-dir -r /opt/mlops/requirements.txt psycopg2-binary==2.9.10
COPY --chown=airflow:root . /opt/mlops
WORKDIR /opt/mlops
ENV PYTHONPATH=/opt/mlops
