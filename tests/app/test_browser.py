"""A person's path: the page under gunicorn, in headless Debian chromium driven by Playwright."""

from __future__ import annotations

import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from model.kinds.digits import load_digits_dataset
from tests.app.conftest import png_bytes
from tests.conftest import SERVED_DB

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it with apt-get)"
)


@contextmanager
def chromium():  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


def test_the_api_page_renders_every_operation_offline(served_app):
    """Swagger UI from the installed package: every request the page makes goes to the app itself."""
    import requests

    paths = requests.get(f"{served_app.url}/openapi.json", timeout=5).json()["paths"]
    elsewhere: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.on("request", lambda r: None if r.url.startswith(served_app.url) else elsewhere.append(r.url))
        page.goto(served_app.url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        shown = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {p.replace("\u200b", "") for p in shown} >= {"/predict", "/inference/image", "/predictions/{prediction_id}"}
    assert len(shown) >= len(paths) - 2, (sorted(shown), sorted(paths))
    assert elsewhere == [], "the page fetched something from outside the service"


def test_upload_and_draw_in_the_browser(served_app, tmp_path, mongo_client):
    digits = load_digits_dataset()
    image = tmp_path / "seven.png"
    index = int((digits.y == 7).nonzero()[0][0])
    image.write_bytes(png_bytes(digits.X[index], scale=16))
    with chromium() as browser:
        page = browser.new_page()
        page.goto(served_app.url + "/")
        page.set_input_files("#file", str(image))
        page.click("#upload-form button[type=submit]")
        page.wait_for_selector("#predicted-label", timeout=15_000)
        assert page.inner_text("#predicted-label") == "7"
        assert page.inner_text("#model-version")
        prediction_id = page.inner_text("#prediction-id")

        # draw a "1": one vertical stroke
        box = page.locator("#pad").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 30)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 30, steps=12)
        page.mouse.up()
        page.click("#classify-drawing")
        page.wait_for_function(f"document.querySelector('#prediction-id').innerText !== '{prediction_id}'")
        drawn = page.inner_text("#predicted-label")
        page.screenshot(path=str(tmp_path / "page.png"))

        # a filled page is no digit: the best guess comes flagged, with the reason
        filled = Image.new("L", (100, 100), 255)
        filled.paste(Image.new("L", (90, 90), 0), (5, 5))
        filled.save(tmp_path / "filled.png")
        page.set_input_files("#file", str(tmp_path / "filled.png"))
        page.click("#upload-form button[type=submit]")
        page.wait_for_selector("#unsure", timeout=15_000)
        unsure = page.inner_text("#unsure")
    assert "unsure" in unsure and "covers" in unsure, unsure
    assert drawn == "1", f"a vertical stroke was read as {drawn}"
    from tests.app.conftest import wait_for

    wait_for(lambda: mongo_client[SERVED_DB].predictions.count_documents({"_id": prediction_id}) == 1,
             message="the page's prediction in MongoDB")  # fmt: skip


def _arc(
    cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24
) -> list[tuple[float, float]]:
    """Points on an ellipse from angle `start` to `end` (degrees; 0 is right, 90 is down)."""
    return [
        (cx + rx * math.cos(math.radians(start + (end - start) * i / n)),
         cy + ry * math.sin(math.radians(start + (end - start) * i / n)))
        for i in range(n + 1)
    ]  # fmt: skip


# One pen stroke per digit on the 240x240 pad, as a person draws it.
STROKES: dict[int, list[tuple[float, float]]] = {
    0: _arc(120, 120, 55, 85, -90, 270),
    1: [(95, 60), (125, 30), (125, 210)],
    2: _arc(120, 85, 52, 48, 200, 380, 16) + [(75, 205), (185, 205)],
    3: _arc(115, 75, 50, 40, 210, 450, 16) + _arc(115, 160, 55, 45, 270, 500, 16)[1:],
    4: [(150, 210), (150, 30), (55, 150), (190, 150)],
    5: [(170, 35), (85, 35), (78, 110)] + _arc(118, 150, 55, 52, 230, 485, 18)[1:],
    6: [(165, 40), (110, 70)] + _arc(120, 155, 50, 50, 200, 560, 24),
    7: [(60, 40), (180, 40), (100, 210)],
    8: _arc(120, 75, 42, 42, 90, 450, 20) + _arc(120, 165, 48, 45, -90, 270, 20)[1:],
    9: _arc(115, 80, 45, 45, 0, 360, 20) + [(160, 80), (155, 210)],
}
PLACES = {"centred": (1.0, 0, 0), "small in a corner": (0.45, 12, 12)}


def test_digits_drawn_on_the_pad_are_read(served_app):
    """Each digit drawn with the pointer, centred and small in a corner, classified by the page's button."""
    read: dict[str, int] = {}
    with chromium() as browser:
        page = browser.new_page()
        page.goto(served_app.url + "/")
        box = page.locator("#pad").bounding_box()
        sx, sy = box["width"] / 240, box["height"] / 240
        for place, (scale, dx, dy) in PLACES.items():
            for digit, points in STROKES.items():
                page.click("#clear")
                before = page.inner_text("#prediction-id") if page.locator("#prediction-id").count() else ""
                x0, y0 = points[0]
                page.mouse.move(box["x"] + (dx + x0 * scale) * sx, box["y"] + (dy + y0 * scale) * sy)
                page.mouse.down()
                for x, y in points[1:]:
                    page.mouse.move(box["x"] + (dx + x * scale) * sx, box["y"] + (dy + y * scale) * sy, steps=4)
                page.mouse.up()
                page.click("#classify-drawing")
                page.wait_for_function(
                    "before => { const e = document.querySelector('#prediction-id'); return e && e.innerText && "
                    "e.innerText !== before; }",
                    arg=before,
                    timeout=15_000,
                )
                read[f"{digit} {place}"] = int(page.inner_text("#predicted-label"))
    right = [name for name, label in read.items() if int(name.split()[0]) == label]
    assert len(right) >= 0.9 * len(read), f"read {len(right)} of {len(read)}: {read}"


def test_the_statistics_page_draws_its_charts_with_whole_labels(served_app, tmp_path):
    """Chart.js, served by the app: the tick labels drawn are the labels /statistics gives, not cut (#18, item 6)."""
    import requests

    row = load_digits_dataset().X[:20].tolist()
    assert requests.post(f"{served_app.url}/predict", json={"instances": row}, timeout=10).status_code == 200
    from tests.app.conftest import wait_for

    def statistics() -> dict:
        return requests.get(f"{served_app.url}/statistics?window=24h", timeout=5).json()

    wait_for(lambda: len(statistics()["per_label"]) >= 5, message="the predictions in the rollups")
    settled: list[dict] = [statistics()]  # other tests' predictions on this app may still be landing

    def unchanged() -> bool:
        time.sleep(1)
        settled.append(statistics())
        return settled[-1]["per_label"] == settled[-2]["per_label"]

    wait_for(unchanged, message="the rollups to settle")
    stats = settled[-1]
    elsewhere: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.on("request", lambda r: None if r.url.startswith(served_app.url) else elsewhere.append(r.url))
        page.goto(served_app.url + "/stats")
        page.wait_for_function("window.Chart && Chart.getChart('per-label') && Chart.getChart('per-version')")
        ticks = page.evaluate(
            "id => Chart.getChart(id).scales.x.ticks.map(t => Chart.getChart(id).scales.x.getLabelForValue(t.value))",
            "per-label",
        )
        versions = page.evaluate("Chart.getChart('per-version').data.labels")
        datasets = page.evaluate("Chart.getChart('per-version').data.datasets.map(d => d.label)")
        hours = page.evaluate("Chart.getChart('per-hour').data.datasets.map(d => d.label)")
        page.screenshot(path=str(tmp_path / "stats.png"), full_page=True)
    assert ticks == list(stats["per_label"]), "every label drawn, whole"
    assert versions == [f"v{v}" for v in stats["per_version"]]
    assert datasets == ["predictions", "mean confidence"] and hours == ["predictions", "mean latency (ms)"]
    assert (tmp_path / "stats.png").stat().st_size > 10_000
    assert elsewhere == []
