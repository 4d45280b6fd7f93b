"""Who may do what: the API key for predictions and reads, the admin token for operators, and the
feedback token that lets whoever got a prediction teach its true label."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, request

from app.errors import Forbidden, Unauthorized
from app.recorder import feedback_key


def require_api_key(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not has_api_key():
            raise Unauthorized("this route needs the API key in the X-API-Key header")
        return view(*args, **kwargs)

    return wrapper


def require_admin(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_admin():
            raise Unauthorized("admin routes need the ADMIN_TOKEN in the X-Admin-Token header")
        return view(*args, **kwargs)

    return wrapper


def has_api_key() -> bool:
    """True when no API key is set, or the request carries it."""
    key = current_app.extensions["settings"].api_key
    if key is None or not key.get_secret_value():
        return True
    given = request.headers.get("X-API-Key") or _bearer()
    if not given:
        return False
    return hmac.compare_digest(given.encode(), key.get_secret_value().encode())


def is_admin() -> bool:
    token = current_app.extensions["settings"].admin_token.get_secret_value()
    given = request.headers.get("X-Admin-Token") or _bearer()
    return bool(token and given and hmac.compare_digest(given.encode(), token.encode()))


def check_feedback_right(record: dict[str, Any], token: Any) -> None:
    """Feedback becomes training data: only the holder of the prediction's token, or an operator, may send it."""
    if is_admin():
        return
    key = record.get("feedback_key")
    if not isinstance(token, str) or not token:
        raise Forbidden(
            'send the feedback_token that came with the prediction as "token" '
            "(or the ADMIN_TOKEN in X-Admin-Token to label as an operator)",
            field="token",
        )
    if not isinstance(key, str) or not hmac.compare_digest(feedback_key(token).encode(), key.encode()):
        raise Forbidden("this token was not issued with that prediction", field="token")


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None
