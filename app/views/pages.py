"""Web pages: classify an uploaded or drawn digit, and the statistics dashboard."""

from __future__ import annotations

import swagger_ui_bundle
from flask import Blueprint, Response, current_app, render_template, send_from_directory

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    """The served model's task kind's page: draw or upload a digit, or a form generated from a table's schema."""
    model = current_app.extensions["models"].current
    if model is None:
        return render_template("index.html")
    return render_template(model.kind.page, spec=model.spec, model=model)


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
