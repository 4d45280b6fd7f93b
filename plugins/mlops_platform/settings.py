"""The one typed Settings object, built at each entry point (app factory, task body, CLI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.registry import RegistryConfig

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "change-me"
# Tests point this elsewhere so a developer's .env cannot leak into them.
ENV_FILE = os.environ.get("MLOPS_ENV_FILE", str(ROOT / ".env"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", env_parse_none_str="")

    environment: Literal["development", "production"] = "development"

    # storage
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "mlops"
    mongo_timeout_ms: int = 2000

    # registry: a local MLflow server, or DagsHub when DAGSHUB_* are set
    mlflow_tracking_uri: str = "http://127.0.0.1:5001"
    mlflow_tracking_username: str | None = None
    mlflow_tracking_password: SecretStr | None = None
    dagshub_repo_owner: str | None = None
    dagshub_repo_name: str | None = None
    dagshub_token: SecretStr | None = None
    model_name: str = "digits-classifier"
    experiment_name: str = "digits"

    # pipeline
    params_path: Path = ROOT / "config" / "params.yaml"
    data_dir: Path = ROOT / "var" / "data"

    # app
    app_url: str = "http://127.0.0.1:5000"
    model_cache_dir: Path = ROOT / "var" / "model-cache"
    outbox_dir: Path = ROOT / "var" / "outbox"
    model_poll_seconds: float = 10.0
    max_batch_rows: int = 10_000
    batches_dir: Path = ROOT / "var" / "batches"  # uploads and results, shared by the app and Airflow
    max_batch_file_bytes: int = 200_000_000
    max_batch_images: int = 20_000
    batch_trigger_retry_seconds: float = 15.0  # while Airflow does not accept a batch run
    batch_trigger_give_up_seconds: float = 600.0  # then the batch fails with the last error
    max_upload_bytes: int = 1_000_000
    max_image_pixels: int = 4_000_000
    store_images: bool = False
    log_predictions: bool = True  # off only to measure the serving path alone (bench)
    log_queue_size: int = 100_000  # records per worker in memory; beyond, they spill to the outbox
    log_flush_seconds: float = 0.2
    log_batch_size: int = 2_000  # records per insert (the MongoDB-wire server's cost per record falls with size)
    prediction_ttl_days: int | None = None
    api_key: SecretStr | None = None
    admin_token: SecretStr = SecretStr(PLACEHOLDER)

    # monitoring
    retrain_on_alert: bool = False
    airflow_url: str = "http://127.0.0.1:8080"
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr = SecretStr(PLACEHOLDER)

    @model_validator(mode="after")
    def _resolve_dagshub(self) -> Settings:
        if self.dagshub_repo_owner and self.dagshub_repo_name:
            self.mlflow_tracking_uri = f"https://dagshub.com/{self.dagshub_repo_owner}/{self.dagshub_repo_name}.mlflow"
            if self.dagshub_token is not None:
                self.mlflow_tracking_username = self.mlflow_tracking_username or self.dagshub_repo_owner
                self.mlflow_tracking_password = self.dagshub_token
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        secrets = {
            "ADMIN_TOKEN": self.admin_token,
            "AIRFLOW_ADMIN_PASSWORD": self.airflow_admin_password,
        }
        weak = [name for name, value in secrets.items() if _is_placeholder(value)]
        if weak:
            raise ValueError(f"production refuses placeholder secrets: set {', '.join(weak)} in .env")
        return self


def _is_placeholder(value: SecretStr | None) -> bool:
    return value is None or value.get_secret_value() in ("", PLACEHOLDER) or len(value.get_secret_value()) < 12


def registry_config(settings: Settings, **overrides: object) -> RegistryConfig:
    """The registry adapter's config, from settings (local MLflow or DagsHub alike)."""
    password = settings.mlflow_tracking_password
    values: dict[str, object] = {
        "tracking_uri": settings.mlflow_tracking_uri,
        "model_name": settings.model_name,
        "experiment_name": settings.experiment_name,
        "username": settings.mlflow_tracking_username,
        "password": password.get_secret_value() if password else None,
        **overrides,
    }
    return RegistryConfig(**values)  # type: ignore[arg-type]
