"""The OpenAPI document, generated from the routes: each view declares its schemas with @documented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

_ROW = {
    "type": "array",
    "items": {"type": "number", "minimum": 0, "maximum": 16},
    "description": "side*side ink values from 0 to 16, row by row; side is /model-info's digits.side "
    "(16 for the default model trained on MNIST, 8 for models trained on scikit-learn's digits)",
}
_LABEL = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
_TABLE_ROW = {"type": "object", "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}]}}
_FEEDBACK_TOKEN = {
    "type": "string",
    "nullable": True,
    "description": "send it back with feedback on these predictions (null when predictions are not logged)",
}
_ERROR = {
    "type": "object",
    "description": "RFC 9457 problem details; error, message and field are extension members",
    "required": ["type", "title", "status", "detail", "error", "message"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "nullable": True},
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _ERROR,
    "PredictRequest": {
        "oneOf": [
            {
                "type": "object",
                "required": ["instances"],
                "properties": {"instances": {"type": "array", "items": _ROW, "minItems": 1}},
            },
            {
                "type": "object",
                "required": ["instances"],
                "description": "tabular models: one object per row, keyed by column",
                "properties": {"instances": {"type": "array", "items": _TABLE_ROW, "minItems": 1}},
            },
            {
                "type": "object",
                "required": ["image"],
                "description": "image models (digits, photos): the image file's bytes in base64",
                "properties": {"image": {"type": "string", "format": "byte"}},
            },
        ]
    },
    "PredictResponse": {
        "type": "object",
        "required": ["predictions", "model", "latency_ms"],
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "description": "a classifier answers label, confidence and probabilities; a regressor "
                    "answers value and interval",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "label": _LABEL,
                        "confidence": {"type": "number"},
                        "probabilities": {"type": "array", "items": {"type": "number"}},
                        "unsure": {
                            "type": "boolean",
                            "description": "the label is a guess: the best class's probability is under the "
                            "model's unsure_below (/model-info), or the task kind judged the input unlike its "
                            "training data (digits: two likely digits, a filled frame, several digits)",
                        },
                        "unsure_reason": {"type": "string", "description": "why unsure is true (absent otherwise)"},
                        "top": {
                            "type": "array",
                            "description": "the three most likely classes, most likely first",
                            "items": {
                                "type": "object",
                                "properties": {"label": _LABEL, "confidence": {"type": "number"}},
                            },
                        },
                        "value": {"type": "number"},
                        "interval": {
                            "type": "array",
                            "nullable": True,
                            "items": {"type": "number"},
                            "description": "a split-conformal interval around value (coverage in /model-info)",
                        },
                    },
                },
            },
            "model": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "labels": {"type": "array", "items": _LABEL},
                    "task_type": {"type": "string", "enum": ["classification", "regression"]},
                },
            },
            "latency_ms": {"type": "number"},
            "feedback_token": _FEEDBACK_TOKEN,
        },
    },
    "InferenceImageRequest": {
        "type": "object",
        "required": ["data"],
        "properties": {"name": {"type": "string"}, "data": {"type": "string", "format": "byte"}},
    },
    "InferenceImageResponse": {
        "type": "object",
        "required": ["uuid"],
        "properties": {"uuid": {"type": "string"}, "feedback_token": _FEEDBACK_TOKEN},
    },
    "PredictionRecord": {
        "type": "object",
        "required": ["id", "uuid", "prediction", "label", "model_version"],
        "properties": {
            "id": {"type": "string"},
            "uuid": {"type": "string"},
            "prediction": _LABEL,
            "label": _LABEL,
            "confidence": {"type": "number"},
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "ts": {"type": "string"},
            "features": {"anyOf": [{"type": "array", "items": {"type": "number"}}, _TABLE_ROW]},
        },
    },
    "FeedbackRequest": {
        "type": "object",
        "required": ["label"],
        "properties": {
            "label": _LABEL,
            "token": {"type": "string", "description": "the feedback_token of the prediction's response"},
        },
    },
    "FeedbackResponse": {
        "type": "object",
        "properties": {
            "prediction_id": {"type": "string"},
            "label": _LABEL,
            "correct": {"type": "boolean"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "model", "mongodb", "mlflow"],
        "properties": {"status": {"type": "string", "enum": ["ready", "not_ready"]}},
    },
    "Probe": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
    },
    "ModelInfo": {
        "type": "object",
        "required": ["name", "version"],
        "properties": {
            "serving": {
                "type": "object",
                "description": "onnxruntime when the compiled graph reproduced scikit-learn at load, else "
                "scikit-learn and the reason",
                "properties": {"engine": {"type": "string", "enum": ["onnxruntime", "scikit-learn"]}},
            }
        },
    },
    "Statistics": {"type": "object", "required": ["total", "errors", "per_label", "latency_ms"]},
    "Reload": {"type": "object", "required": ["changed"]},
    "MonitoringReport": {"type": "object", "required": ["status", "checks"]},
    "BatchUpload": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": ".csv, .parquet or .zip"}},
    },
    "Batch": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["pending", "running", "succeeded", "failed"]},
            "rows": {"type": "integer"},
            "scored": {"type": "integer"},
            "model_version": {"type": "string"},
            "error": {"type": "string", "nullable": True},
        },
    },
}
_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or wrong API key / admin token",
    404: "Not found",
    403: "Not allowed: feedback needs the prediction's feedback_token (or the admin token)",
    409: "Not ready yet (e.g. a batch that has not succeeded)",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input: the message names the field",
    503: "Not ready (no model) or storage unavailable",
    507: "Storage quota reached: the message names the limit",
}


def documented(
    summary: str, request: str | None = None, response: str | None = None, errors: tuple[int, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        view.openapi = {"summary": summary, "request": request, "response": response, "errors": errors}  # type: ignore[attr-defined]
        return view

    return decorate


def openapi_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        spec = getattr(view, "openapi", None) or getattr(getattr(view, "__wrapped__", None), "openapi", None)
        if spec is None:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {"summary": spec["summary"], "operationId": f"{rule.endpoint}_{method.lower()}"}
            params = [
                {"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
                for arg in sorted(rule.arguments)
            ]
            if rule.endpoint == "api.statistics":
                params.append(
                    {"name": "window", "in": "query", "schema": {"type": "string", "pattern": r"^\d{1,4}[mhd]$"}}
                )
            if params:
                operation["parameters"] = params
            if spec["request"] == "BatchUpload":
                schema_ref = {"schema": {"$ref": "#/components/schemas/BatchUpload"}}
                operation["requestBody"] = {"required": True, "content": {"multipart/form-data": schema_ref}}
            elif spec["request"]:
                content: dict[str, Any] = {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{spec['request']}"}}
                }
                if rule.endpoint == "api.predict":
                    content["multipart/form-data"] = {
                        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                    }
                operation["requestBody"] = {"required": True, "content": content}
            ok: dict[str, Any] = {"description": "OK"}
            if spec["response"]:
                ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{spec['response']}"}}}
            responses: dict[str, Any] = {"202" if spec["request"] == "BatchUpload" else "200": ok}
            for status in (*spec["errors"], 400) if spec["request"] else spec["errors"]:
                responses[str(status)] = {
                    "description": _DESCRIPTIONS[status],
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            if rule.endpoint in ("api.health", "api.readyz"):  # not ready is a state, not a problem
                responses["503"]["content"] = ok.get("content", {})
            paths.setdefault(path, {})[method.lower()] = operation | {"responses": responses}
    return {
        "openapi": "3.0.3",
        "info": {"title": "MLOps platform prediction service", "version": "1.0.0"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
            },
        },
    }
