"""Typed API errors and the one place that turns every exception into a JSON `{error, message}`."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, has_request_context, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException

from app.prediction_log import LogUnavailable
from app.requests_log import request_id
from model.errors import BlankImage, ImageError, ImageTooLarge, UnreadableImage

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.field = field


class InvalidInput(ApiError):
    status, code = 422, "invalid_input"


class UnsupportedMedia(ApiError):
    status, code = 415, "unsupported_media_type"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NoModel(ApiError):
    status, code = 503, "no_model"


_IMAGE_ERRORS: dict[type[ImageError], type[ApiError]] = {
    UnreadableImage: UnsupportedMedia,
    ImageTooLarge: PayloadTooLarge,
    BlankImage: InvalidInput,
}


def from_image_error(exc: ImageError, field: str) -> ApiError:
    cls = next((api for err, api in _IMAGE_ERRORS.items() if isinstance(exc, err)), InvalidInput)
    return cls(f"{field}: {exc}", field=field)


def error_response(status: int, code: str, message: str, field: str | None = None) -> tuple[Response, int]:
    """An RFC 9457 problem (`application/problem+json`: type, title, status, detail, instance), with our
    own `error` code, `message` and `field` kept as extension members for the clients that read them."""
    body: dict[str, object] = {
        "type": "about:blank",  # the status says what kind of problem it is; `error` refines it
        "title": _title(status),
        "status": status,
        "detail": message,
        "instance": request.path if has_request_context() else None,
        "error": code,
        "message": message,
    }
    if field:
        body["field"] = field
    response = jsonify(body)
    response.mimetype = PROBLEM_JSON
    return response, status


PROBLEM_JSON = "application/problem+json"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        _record_failure(exc.status, exc.code)
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(LogUnavailable)
    def _log_unavailable(exc: LogUnavailable) -> tuple[Response, int]:
        log.error("refused a request its record could not be made durable: %s", exc)
        return error_response(503, "log_unavailable", f"the prediction was not recorded, so it is not answered: {exc}")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if status == 413:
            code = "payload_too_large"
            message = f"the request body exceeds {app.config['MAX_CONTENT_LENGTH']:,} bytes"
        if status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        if isinstance(exc, ClientDisconnected):  # the body stopped arriving (app/http_worker.py's deadline)
            status, code, message = 408, "request_timeout", "the request body stopped arriving; send it again"
        _record_failure(status, code)
        return error_response(status, code, message)

    @app.errorhandler(TimeoutError)
    def _slow_body(exc: TimeoutError) -> tuple[Response, int]:
        # the worker's socket deadline (app/http_worker.py) passed while the body was being read
        _record_failure(408, "request_timeout")
        return error_response(408, "request_timeout", "the request body stopped arriving; send it again")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        _record_failure(500, "internal_error")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def _record_failure(status: int, code: str) -> None:
    """Failed prediction requests are logged as error records too."""
    from flask import current_app

    plog = current_app.extensions.get("prediction_log")
    if plog is not None and request.endpoint and request.endpoint.startswith("api.predict"):
        try:
            plog.record_error(route=request.path, status=status, code=code, request_id=request_id())
        except LogUnavailable:  # the error answer goes out all the same; the log says why it is missing
            log.warning("error record for %s not logged: the prediction log is unavailable", request.path)
