# One image for Airflow, the MLflow server and the app, with exactly the production lock in it.
# The slim base brings Airflow without providers or extras of its own, so the Celery provider, celery,
# redis and psycopg2 come from requirements.txt, resolved with every other pin (dev tools stay out:
# they are in requirements-dev.txt). Its entrypoint runs any command but bash, python or airflow as
# `airflow <command>`: services that are not Airflow (mlflow, the app) set their own entrypoint in
# docker-compose.yml.
FROM apache/airflow:slim-3.3.2-python3.11

USER root
# fonts: the digits kind renders training and evaluation digits in them (model/digit_sets.py)
RUN apt-get update && apt-get install -y --no-install-recommends curl fonts-dejavu-core fonts-liberation \
    && rm -rf /var/lib/apt/lists/*
# Every path docker-compose mounts a volume on, created here owned by the user the services run as.
# Docker copies a path's owner into a new, empty volume only when the image has that path; one the
# image lacks becomes a root-owned directory that airflow cannot write. (compose's volume-init also
# chowns the named volumes, for volumes an older file created root-owned.)
RUN install -d -o airflow -g root -m 0775 /opt/mlops /opt/mlflow \
    && install -d -o airflow -g root -m 0775 \
        /opt/airflow/auth \
        /opt/mlops/var \
        /opt/mlflow/artifacts \
        /opt/mlflow/auth

USER airflow
COPY --chown=airflow:root requirements.txt /opt/mlops/requirements.txt
# The lock as it stands, nothing beside it; pip check fails the build if it disagrees with the base.
RUN pip install --no-cache-dir -r /opt/mlops/requirements.txt && pip check
COPY --chown=airflow:root . /opt/mlops
WORKDIR /opt/mlops
ENV PYTHONPATH=/opt/mlops
# the pinned data sets (MNIST for the default digit model) where params.yaml looks for them
RUN python -m ops.fetch_data /home/airflow/.cache/mlops-platform
