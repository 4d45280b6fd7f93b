"""Web pages: classify an uploaded or drawn digit, and the statistics dashboard."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")


@bp.get("/stats")
def stats() -> str:
    return render_template("stats.html")


@bp.get("/docs")
def docs() -> str:
    return render_template("docs.html")


@bp.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)
