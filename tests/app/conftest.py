from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app, shutdown
from config.settings import Settings
from model.features import features_to_image
from tests.conftest import trust_champion

ADMIN_TOKEN = "test-admin-token-0123456789"


def app_settings(servers, tmp_path: Path, model_name: str, db_name: str, **extra) -> Settings:
    values = {
        "mongo_uri": servers.mongo.url,
        "mongo_db": db_name,
        "mongo_timeout_ms": 1000,
        "mlflow_tracking_uri": servers.mlflow.url,
        "model_name": model_name,
        "model_cache_dir": tmp_path / "model-cache",
        "outbox_dir": tmp_path / "outbox",
        "model_poll_seconds": 0.5,
        "log_flush_seconds": 0.05,
        "admin_token": ADMIN_TOKEN,
        **extra,
    }
    return Settings(_env_file=None, **values)


def wait_for(predicate, timeout: float = 30.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture
def app(servers, champion, db, tmp_path) -> Iterator[Flask]:
    trust_champion(db, champion)
    application = create_app(app_settings(servers, tmp_path, champion["model_name"], db.name))
    wait_for(lambda: application.extensions["models"].current is not None, message="the champion to load")
    yield application
    shutdown(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def png_bytes(features, fmt: str = "PNG", mode: str | None = None, scale: int = 8) -> bytes:
    image = features_to_image(features, scale=scale)
    if mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
