"""Request payloads -> feature rows, with errors that name the field and say what to fix."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Request

from app.errors import ApiError, InvalidInput, PayloadTooLarge, UnsupportedMedia, from_image_error
from model.errors import ImageError
from model.features import MAX_VALUE, N_FEATURES, decode_image, image_to_features

_WHITESPACE = re.compile(rb"\s+")
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,")


@dataclass(frozen=True)
class Inputs:
    X: np.ndarray  # (n, 64)
    rows: list[list[float]]  # the same rows as lists, stored with each record
    input_hashes: list[str]
    images: list[bytes | None]


def parse_predict(request: Request, max_rows: int, max_image_bytes: int, max_pixels: int) -> Inputs:
    """A multipart file, JSON {"image": base64}, or JSON {"instances": [[64 numbers], ...]}."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file") or request.files.get("image")
        if upload is None:
            raise InvalidInput("send the image in a multipart field named 'file'", field="file")
        data = upload.read(max_image_bytes + 1)
        return from_image_bytes(data, "file", max_image_bytes, max_pixels)
    body = json_body(request)
    if "instances" in body:
        return from_instances(body["instances"], max_rows)
    if "image" in body:
        return from_image_bytes(decode_base64(body["image"], "image"), "image", max_image_bytes, max_pixels)
    raise InvalidInput(
        'send {"image": "<base64>"}, {"instances": [[64 numbers], ...]} or a multipart file field "file"',
        field="body",
    )


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


def from_image_bytes(data: bytes, field: str, max_image_bytes: int, max_pixels: int) -> Inputs:
    if len(data) > max_image_bytes:
        raise PayloadTooLarge(f"{field}: images are limited to {max_image_bytes:,} bytes", field=field)
    try:
        features = image_to_features(decode_image(data, max_pixels))
    except ImageError as exc:
        raise from_image_error(exc, field) from exc
    row = features.tolist()
    return Inputs(
        X=features.reshape(1, N_FEATURES),
        rows=[row],
        input_hashes=[hashlib.sha256(data).hexdigest()],
        images=[data],
    )


def from_instances(instances: Any, max_rows: int) -> Inputs:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances must be a non-empty list of rows", field="instances")
    if len(instances) > max_rows:
        raise InvalidInput(
            f"instances has {len(instances):,} rows; at most {max_rows:,} per request", field="instances"
        )
    for i, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != N_FEATURES:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise InvalidInput(
                f"instances[{i}] must be a list of {N_FEATURES} numbers, got {got}", field=f"instances[{i}]"
            )
    try:
        X = np.array(instances)  # no dtype: strings, nulls and booleans show up as a non-numeric kind
    except ValueError:
        X = np.array([], dtype=object)
    if X.dtype.kind not in "iuf" or X.shape != (len(instances), N_FEATURES):
        i, j = _first_non_number(instances)
        raise InvalidInput(
            f"instances[{i}][{j}] is {instances[i][j]!r}; values must be numbers", field=f"instances[{i}][{j}]"
        )
    X = X.astype(np.float64, copy=False)
    bad = ~np.isfinite(X) | (X < 0) | (X > MAX_VALUE)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(
            f"instances[{i}][{j}] is {instances[i][j]}; values must be finite numbers from 0 to {MAX_VALUE:g}",
            field=f"instances[{i}][{j}]",
        )
    hashes = [hashlib.sha256(X[i].tobytes()).hexdigest()[:32] for i in range(len(X))]
    return Inputs(X=X, rows=X.tolist(), input_hashes=hashes, images=[None] * len(X))


def _first_non_number(instances: list[Any]) -> tuple[int, int]:
    for i, row in enumerate(instances):
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return i, j
    return 0, 0
