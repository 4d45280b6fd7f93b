"""Flask's JSON provider on orjson: request bodies and responses are the hot path of /predict."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class OrjsonProvider(JSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=_default, option=_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            pass
        # NaN and Infinity are not JSON, but clients send them: parse leniently so validation can name
        # the field instead of answering a bare "invalid JSON". What orjson refuses for other reasons
        # (nesting past its limit, lone surrogates) stays refused: a ValueError is a 400, not a 500.
        try:
            value = json.loads(s)
            json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate cannot be stored (BSON is UTF-8)
        except RecursionError as exc:
            raise ValueError("the JSON is nested too deeply") from exc
        except UnicodeEncodeError as exc:
            raise ValueError("the JSON holds a lone surrogate (\\ud800-\\udfff), which is not text") from exc
        return value

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(orjson.dumps(obj, default=_default, option=_OPTIONS), mimetype="application/json")
