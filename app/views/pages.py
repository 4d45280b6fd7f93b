"""Web pages: classify an uploaded or drawn digit, and the statistics dashboard."""

from __future__ import annotations

import swagger_ui_bundle
from flask import Blueprint, Response, current_app, render_template, send_from_directory

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    """The image page (draw or upload), or for a tabular model a form generated from its schema."""
    model = current_app.extensions["models"].current
    if model is not None and model.schema is not None:
        return render_template("table.html", schema=model.schema, model=model)
    return render_template("index.html")


@bp.get("/stats")
def stats() -> str:
    return render_template("stats.html")


@bp.get("/docs")
def docs() -> str:
    """Swagger UI on /openapi.json, its files served from the swagger-ui-bundle package: no CDN."""
    return render_template("docs.html")


@bp.get("/docs/ui/<path:name>")
def swagger_ui(name: str) -> Response:
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, name, max_age=86_400)


@bp.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)
