"""The prediction service: `gunicorn 'app:create_app()'` (one app, model and log writer per worker)."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from flask import Flask

from config.settings import Settings, registry_config

log = logging.getLogger(__name__)


class PlatformFlask(Flask):
    from app.json import OrjsonProvider as json_provider_class  # noqa: N813


def create_app(settings: Settings | None = None, *, start_background: bool = True, **overrides: Any) -> Flask:
    """Build the Flask app; `overrides` replace Settings fields (tests)."""
    from pymongo import MongoClient

    from app.batch_dispatch import BatchDispatcher
    from app.errors import register_error_handlers
    from app.metrics import Metrics
    from app.model_manager import ModelManager
    from app.prediction_log import PredictionLog
    from app.requests_log import configure_logging
    from app.requests_log import install as install_request_log
    from app.views import api, batches, pages

    settings = settings or Settings()
    if overrides:
        settings = settings.model_copy(update=overrides)

    configure_logging(settings.log_format)
    app = PlatformFlask(__name__)
    install_request_log(app, settings.access_log)
    # Images are capped per file in the views; the whole body may hold a batch of rows.
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_upload_bytes * 2, settings.max_batch_rows * 28 * 28 * 12)

    client: MongoClient = MongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        socketTimeoutMS=max(settings.mongo_timeout_ms * 5, 10_000),
        connect=False,
        tz_aware=True,
    )
    db = client[settings.mongo_db]
    models = ModelManager(
        registry_config(settings, http_timeout=5.0, http_retries=0),
        settings.model_cache_dir,
        settings.model_poll_seconds,
        lambda: db,
    )
    prediction_log = PredictionLog(
        lambda: db,
        settings.outbox_dir,
        queue_size=settings.log_queue_size,
        batch_size=settings.log_batch_size,
        flush_seconds=settings.log_flush_seconds,
        max_outbox_bytes=settings.log_max_outbox_bytes,
    )
    app.extensions.update(
        settings=settings,
        mongo=client,
        db=db,
        models=models,
        prediction_log=prediction_log,
        metrics=Metrics(),
        batch_trigger=batches.trigger_with_airflow(settings),
    )
    dispatcher = BatchDispatcher(
        lambda: db,
        lambda: app.extensions["batch_trigger"],
        retry_seconds=settings.batch_trigger_retry_seconds,
        give_up_seconds=settings.batch_trigger_give_up_seconds,
    )
    app.extensions["batch_dispatcher"] = dispatcher

    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(pages.bp)

    if start_background:
        prediction_log.start()
        models.start()
        dispatcher.start()
        threading.Thread(target=_ensure_indexes, args=(db, settings), name="ensure-indexes", daemon=True).start()
        atexit.register(shutdown, app)
    return app


def shutdown(app: Flask) -> None:
    """Flush the prediction log and stop background threads (gunicorn worker exit, tests)."""
    app.extensions["models"].stop()
    app.extensions["batch_dispatcher"].stop()
    app.extensions["prediction_log"].close()
    app.extensions["mongo"].close()


def _ensure_indexes(db: Any, settings: Settings) -> None:
    from pymongo.errors import PyMongoError

    from model.store import ensure_indexes

    try:
        ensure_indexes(db, settings.prediction_ttl_days)
    except PyMongoError as exc:
        log.warning("could not create MongoDB indexes now (%s); they will be created on the next start", exc)
