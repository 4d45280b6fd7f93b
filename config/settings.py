"""The one typed Settings object, built at each entry point (app factory, task body, CLI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.registry import RegistryConfig
from model.sources import SourcePolicy

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "change-me"
# Tests point this elsewhere so a developer's .env cannot leak into them.
ENV_FILE = os.environ.get("MLOPS_ENV_FILE", str(ROOT / ".env"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", env_parse_none_str="", populate_by_name=True)

    environment: Literal["development", "production"] = "development"

    # storage
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "mlops"
    mongo_timeout_ms: int = 2000

    # registry: a local MLflow server, any MLflow >= 2.7 server, or DagsHub's when DAGSHUB_REPO_* are set
    mlflow_tracking_uri: str = "http://127.0.0.1:5001"
    mlflow_registry_uri: str | None = None  # the model registry on another server; default: the tracking server
    mlflow_tracking_username: str | None = None
    mlflow_tracking_password: SecretStr | None = None
    dagshub_repo_owner: str | None = None
    dagshub_repo_name: str | None = None
    # the dagshub client's own variable names; DAGSHUB_TOKEN is read too
    dagshub_user_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("dagshub_user_token", "dagshub_token")
    )
    dagshub_username: str | None = None  # the token owner's user name: not necessarily the repo owner
    dagshub_client_host: str = "https://dagshub.com"  # a self-hosted DagsHub: its base URL
    model_name: str = "digits-classifier"
    experiment_name: str = "digits"

    # pipeline
    params_path: Path = ROOT / "config" / "params.yaml"
    data_dir: Path = ROOT / "var" / "data"  # per host: cached snapshots (stored in MongoDB GridFS)
    # where training data may be read from: files inside this directory, URLs on these hosts
    data_source_dir: Path = ROOT / "data"
    data_source_hosts: str | None = None  # comma-separated host names, e.g. raw.githubusercontent.com
    data_source_max_bytes: int = 1 << 30
    data_source_timeout_seconds: float = 30.0

    # app
    app_url: str = "http://127.0.0.1:5000"
    model_cache_dir: Path = ROOT / "var" / "model-cache"
    outbox_dir: Path = ROOT / "var" / "outbox"
    model_poll_seconds: float = 10.0
    max_batch_rows: int = 10_000
    max_batch_file_bytes: int = 200_000_000
    max_batches_bytes: int = 5_000_000_000  # all batch uploads and results in GridFS together; past it, 507
    batch_retention_days: float = 7.0  # batch files older than this are deleted at the next upload
    max_batch_images: int = 20_000
    batch_trigger_retry_seconds: float = 15.0  # while Airflow does not accept a batch run
    batch_trigger_give_up_seconds: float = 600.0  # then the batch fails with the last error
    max_upload_bytes: int = 10_000_000  # a phone's photo is 2-5 MB; JPEGs are decoded small (model/images.py)
    max_image_pixels: int = 40_000_000  # a 12-megapixel photo, with room; the decompression-bomb guard
    store_images: bool = False
    log_predictions: bool = True  # off only to measure the serving path alone (bench)
    log_queue_size: int = 100_000  # records per worker in memory; beyond, they spill to the outbox
    log_flush_seconds: float = 0.2
    log_max_outbox_bytes: int = 1 << 30  # past this, predictions are refused with 503 log_unavailable
    log_batch_size: int = 2_000  # records per insert (the MongoDB-wire server's cost per record falls with size)
    prediction_ttl_days: int | None = None
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for a log pipeline
    access_log: bool = True  # a line per request: method, path, status, duration, request id
    api_key: SecretStr | None = None
    admin_token: SecretStr = SecretStr(PLACEHOLDER)

    # docker-compose's credentials: only checked here (ENVIRONMENT=production refuses placeholders)
    airflow_jwt_secret: SecretStr | None = None
    postgres_password: SecretStr | None = None
    mongo_root_password: SecretStr | None = None

    # Airflow tasks: seconds before a failed task is tried again (monitoring waits three times this)
    task_retry_delay_seconds: float = 10.0

    # monitoring
    retrain_on_alert: bool = False
    airflow_url: str = "http://127.0.0.1:8080"
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr = SecretStr(PLACEHOLDER)

    @property
    def sources(self) -> SourcePolicy:
        hosts = tuple(h.strip().lower() for h in (self.data_source_hosts or "").split(",") if h.strip())
        return SourcePolicy(self.data_source_dir, hosts, self.data_source_max_bytes, self.data_source_timeout_seconds)

    @model_validator(mode="after")
    def _resolve_dagshub(self) -> Settings:
        """DAGSHUB_* become the tracking URI and basic auth, as `dagshub.init` would set them, offline.

        Nothing here calls DagsHub: no login flow, no repository created. The probe at start-up then
        checks the server answers and accepts the credentials.
        """
        repo = (self.dagshub_repo_owner, self.dagshub_repo_name)
        if not any(repo):
            if self.dagshub_user_token is not None:
                raise ValueError("DAGSHUB_USER_TOKEN is set but DAGSHUB_REPO_OWNER and DAGSHUB_REPO_NAME are not")
            return self
        if not all(repo):
            raise ValueError("set both DAGSHUB_REPO_OWNER and DAGSHUB_REPO_NAME (or neither)")
        host = self.dagshub_client_host.rstrip("/")
        self.mlflow_tracking_uri = f"{host}/{self.dagshub_repo_owner}/{self.dagshub_repo_name}.mlflow"
        if self.dagshub_user_token is not None:
            if not self.dagshub_username:
                raise ValueError(
                    "DAGSHUB_USER_TOKEN is set but DAGSHUB_USERNAME is not: set it to your DagsHub user name "
                    "(the token's owner, which for organisation repos is not the repo owner)"
                )
            self.mlflow_tracking_username = self.dagshub_username
            self.mlflow_tracking_password = self.dagshub_user_token
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        secrets = {
            "ADMIN_TOKEN": self.admin_token,
            "AIRFLOW_ADMIN_PASSWORD": self.airflow_admin_password,
            # production is open by default no more: predictions and feedback (training labels) need a key
            "API_KEY": self.api_key,
            # the compose stack's own credentials, read here so every process refuses the same placeholders
            "AIRFLOW_JWT_SECRET": self.airflow_jwt_secret,
            "POSTGRES_PASSWORD": self.postgres_password,
            "MONGO_ROOT_PASSWORD": self.mongo_root_password,
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
    dagshub = settings.dagshub_user_token is not None
    values: dict[str, object] = {
        "tracking_uri": settings.mlflow_tracking_uri,
        "registry_uri": settings.mlflow_registry_uri,
        "credentials_hint": (
            "DAGSHUB_USERNAME / DAGSHUB_USER_TOKEN"
            if dagshub
            else "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
        ),
        "model_name": settings.model_name,
        "experiment_name": settings.experiment_name,
        "username": settings.mlflow_tracking_username,
        "password": password.get_secret_value() if password else None,
        **overrides,
    }
    return RegistryConfig(**values)  # type: ignore[arg-type]
