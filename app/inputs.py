"""Request payloads -> feature rows, with errors that name the field and say what to fix."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Request

from app.errors import ApiError, InvalidInput, PayloadTooLarge, UnsupportedMedia, from_image_error
from model.errors import ImageError
from model.features import MAX_VALUE, N_FEATURES, decode_image, image_to_features
from model.tabular import Schema, columns_of

_WHITESPACE = re.compile(rb"\s+")
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,")


@dataclass(frozen=True)
class Inputs:
    X: Any  # images: an (n, 64) array; tables: one array per column (tabular.columns_of)
    rows: list[Any] | None  # the rows as lists (images) or dicts (tables) to store; None: X.tolist() when needed
    input_hashes: list[str]
    images: list[bytes | None]


def parse_predict(
    request: Request, max_rows: int, max_image_bytes: int, max_pixels: int, schema: Schema | None = None
) -> Inputs:
    """A multipart file, JSON {"image": base64}, or JSON {"instances": [[64 numbers], ...]}.

    A tabular model (one with a schema) takes only JSON {"instances": [{"column": value, ...}, ...]}.
    """
    if schema is not None:
        body = json_body(request)
        if "instances" not in body:
            example = {c.name: "..." for c in schema.columns[:3]}
            raise InvalidInput(
                f'this model scores table rows: send {{"instances": [{json.dumps(example)[:-1]}, ...}}]}}',
                field="instances",
            )
        return from_records(body["instances"], schema, max_rows)
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
    try:
        X = np.array(instances)  # no dtype: strings, nulls and booleans show up as a non-numeric kind
    except ValueError:  # ragged rows
        X = np.array([], dtype=object)
    if X.dtype.kind not in "iuf" or X.shape != (len(instances), N_FEATURES):  # find the row to blame
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != N_FEATURES:
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise InvalidInput(
                    f"instances[{i}] must be a list of {N_FEATURES} numbers, got {got}", field=f"instances[{i}]"
                )
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
    return Inputs(X=X, rows=None, input_hashes=hashes, images=[None] * len(X))


def from_records(instances: Any, schema: Schema, max_rows: int) -> Inputs:
    """Rows as objects keyed by column, each checked against the model's schema; errors name the field."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances must be a non-empty list of objects, one per row", field="instances")
    if len(instances) > max_rows:
        raise InvalidInput(
            f"instances has {len(instances):,} rows; at most {max_rows:,} per request (use POST /batches for more)",
            field="instances",
        )
    names = schema.names
    known = set(names)
    rows = []
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InvalidInput(
                f"instances[{i}] must be an object with the columns {names}, got {type(row).__name__}",
                field=f"instances[{i}]",
            )
        missing = [name for name in names if name not in row]
        if missing:
            raise InvalidInput(f"instances[{i}] lacks the columns {missing}", field=f"instances[{i}].{missing[0]}")
        unknown = [key for key in row if key not in known]
        if unknown:
            raise InvalidInput(
                f"instances[{i}].{unknown[0]} is not a column of this model (its columns: {names})",
                field=f"instances[{i}].{unknown[0]}",
            )
        clean: dict[str, float | str | None] = {}
        for column in schema.columns:
            value = row[column.name]
            where = f"instances[{i}].{column.name}"
            if value is None and schema.imputes and column.missing_share > 0:
                clean[column.name] = None  # imputed by the Pipeline, as in training
                continue
            if value is None:
                raise InvalidInput(
                    f"{where} is null; send a value: this column was never missing in the training data",
                    field=where,
                )
            if column.kind == "numeric":
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InvalidInput(f"{where} is {value!r}; it must be a finite number", field=where)
                if (column.min is not None and value < column.min) or (column.max is not None and value > column.max):
                    raise InvalidInput(
                        f"{where} is {value}; it must be within [{column.min}, {column.max}]", field=where
                    )
                clean[column.name] = float(value)
            else:
                if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
                    raise InvalidInput(
                        f"{where} is {value!r}; it must be a category such as {(column.categories or ['...'])[:5]}",
                        field=where,
                    )
                clean[column.name] = str(value)
        rows.append(clean)
    hashes = [hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()[:32] for row in rows]
    return Inputs(X=columns_of(rows, schema), rows=rows, input_hashes=hashes, images=[None] * len(rows))


def _first_non_number(instances: list[Any]) -> tuple[int, int]:
    for i, row in enumerate(instances):
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return i, j
    return 0, 0
