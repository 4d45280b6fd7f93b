"""Request payloads -> feature rows, with errors that name the field and say what to fix."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Request

from app.errors import ApiError, InvalidInput, PayloadTooLarge, UnsupportedMedia, from_image_error
from model.champion import Model
from model.errors import ImageError
from model.kinds import Inputs, InvalidRow

_WHITESPACE = re.compile(rb"\s+")
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,")


def parse_predict(request: Request, model: Model, max_rows: int, max_image_bytes: int, max_pixels: int) -> Inputs:
    """A multipart file, JSON {"image": base64}, or JSON {"instances": [...]}: what each holds is the
    served model's task kind's to check (64 numbers a row for digits, an object a row for a table)."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file") or request.files.get("image")
        if upload is None:
            raise InvalidInput("send the image in a multipart field named 'file'", field="file")
        data = upload.read(max_image_bytes + 1)
        return from_image_bytes(model, data, "file", max_image_bytes, max_pixels)
    body = json_body(request)
    if "instances" in body:
        with invalid_rows():
            return model.kind.from_instances(body["instances"], model.spec, max_rows)
    if "image" in body:
        return from_image_bytes(model, decode_base64(body["image"], "image"), "image", max_image_bytes, max_pixels)
    raise InvalidInput(model.kind.usage(model.spec), field="body")


@contextmanager
def invalid_rows() -> Iterator[None]:
    """A task kind's InvalidRow as the 422 that names the field."""
    try:
        yield
    except InvalidRow as exc:
        raise InvalidInput(str(exc), field=exc.field) from exc


def json_body(request: Request) -> dict[str, Any]:
    if not request.is_json:
        raise UnsupportedMedia(
            f"expected application/json or multipart/form-data, got '{request.mimetype or 'no content type'}'",
            field="Content-Type",
        )
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError("the body is not valid JSON", code="invalid_json", status=400, field="body")
    if not isinstance(body, dict):
        raise InvalidInput(f"the JSON body must be an object, got {type(body).__name__}", field="body")
    return body


def decode_base64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a base64 string, got {type(value).__name__}", field=field)
    text = _DATA_URL.sub("", value, count=1)
    raw = _WHITESPACE.sub(b"", text.encode("ascii", errors="replace"))
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{field} is not valid base64: {exc}", field=field) from exc


def from_image_bytes(model: Model, data: bytes, field: str, max_image_bytes: int, max_pixels: int) -> Inputs:
    if len(data) > max_image_bytes:
        raise PayloadTooLarge(f"{field}: images are limited to {max_image_bytes:,} bytes", field=field)
    try:
        return model.kind.from_image(data, model.spec, max_pixels)
    except ImageError as exc:
        raise from_image_error(exc, field) from exc
    except InvalidRow as exc:
        raise InvalidInput(str(exc), field=field) from exc
