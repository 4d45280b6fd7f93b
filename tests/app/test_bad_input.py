"""Bad input gets a 4xx with {error, message} naming what to fix; never a 500."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from model.kinds.digits import load_digits_dataset
from tests.app.conftest import b64, png_bytes

ROW = load_digits_dataset().X[0].tolist()


def image_bytes(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


CASES = [
    ("empty body", dict(data=b"", content_type="application/json"), 400, "invalid_json"),
    ("wrong content type", dict(data=b"hello", content_type="text/plain"), 415, "unsupported_media_type"),
    ("not an object", dict(json=[1, 2]), 422, "invalid_input"),
    ("no known field", dict(json={"rows": []}), 422, "invalid_input"),
    ("row too short", dict(json={"instances": [ROW[:10]]}), 422, "instances[0]"),
    ("row of strings", dict(json={"instances": [["a"] * 64]}), 422, "instances[0][0]"),
    ("null in row", dict(json={"instances": [[None] + ROW[1:]]}), 422, "instances[0][0]"),
    ("booleans", dict(json={"instances": [[True] * 64]}), 422, "instances[0][0]"),
    ("out of range", dict(json={"instances": [ROW[:5] + [17] + ROW[6:]]}), 422, "instances[0][5]"),
    ("negative", dict(json={"instances": [[-1] + ROW[1:]]}), 422, "instances[0][0]"),
    ("NaN", dict(data=b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", content_type="application/json"), 422, "finite"),
    (
        "Infinity",
        dict(data=b'{"instances": [[Infinity' + b", 0" * 63 + b"]]}", content_type="application/json"),
        422,
        "finite",
    ),
    ("empty batch", dict(json={"instances": []}), 422, "non-empty"),
    ("over the batch limit", dict(json={"instances": [ROW] * 10_001}), 422, "at most 10,000"),
    ("image not a string", dict(json={"image": 12}), 422, "base64 string"),
    ("invalid base64", dict(json={"image": "@@@###"}), 422, "not valid base64"),
    ("base64 of text", dict(json={"image": b64(b"just some text")}), 415, "not an image"),
    ("truncated png", dict(json={"image": b64(png_bytes(ROW)[:100])}), 415, "corrupt or truncated"),
    ("blank image", dict(json={"image": b64(image_bytes(Image.new("L", (28, 28), 255)))}), 422, "blank"),
    ("huge dimensions", dict(json={"image": b64(image_bytes(Image.new("1", (10_000, 10_000))))}), 413, "pixels"),
    ("multipart without file", dict(data={"other": "x"}, content_type="multipart/form-data"), 422, "'file'"),
]


@pytest.mark.parametrize(("name", "kwargs", "status", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_predict_requests(client, name, kwargs, status, needle):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, (name, response.json)
    body = response.json
    assert set(body) >= {"error", "message"}
    assert needle in body["message"] or needle == body["error"], body
    assert response.mimetype == "application/problem+json"
    assert body["status"] == status and body["detail"] == body["message"] and body["instance"] == "/predict"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/nope", {}, 404),
        ("delete", "/predict", {}, 405),
        ("post", "/admin/reload", {}, 401),
        ("get", "/predictions/not-a-uuid", {}, 422),
        ("post", "/predict", {"data": b"{", "content_type": "application/json"}, 400),
        ("post", "/predict", {"data": "one byte over the limit", "content_type": "application/json"}, 413),
        ("get", "/statistics?window=forever", {}, 422),
    ],
)
def test_every_error_is_a_problem_document(client, app, method, path, kwargs, status):
    """RFC 9457 problem details, with our own error/message/field kept for existing clients (#18, item 4)."""
    if kwargs.get("data") == "one byte over the limit":
        kwargs = {**kwargs, "data": b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["type"] == "about:blank" and body["status"] == status and body["title"]
    assert body["detail"] == body["message"] and body["error"] and body["instance"] == path.split("?")[0]


def test_animated_gif_is_classified_by_its_first_frame(client):
    from model.features import features_to_image

    first = features_to_image(ROW).convert("P")
    data = image_bytes(first, "GIF", save_all=True, append_images=[Image.new("P", first.size, 0)])
    response = client.post("/predict", json={"image": b64(data)})
    assert response.status_code == 200
    single = client.post("/predict", json={"image": b64(image_bytes(first, "GIF"))})
    assert response.json["predictions"][0]["label"] == single.json["predictions"][0]["label"]


def test_image_over_the_upload_limit(client, app):
    noisy = Image.effect_noise((3300, 3300), 100).convert("L")  # 10.9 MB as a BMP, 10.9 megapixels
    data = image_bytes(noisy, "BMP")
    assert len(data) > app.extensions["settings"].max_upload_bytes == 10_000_000
    response = client.post("/predict", data={"file": (io.BytesIO(data), "big.bmp")}, content_type="multipart/form-data")
    assert response.status_code == 413 and response.json["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (lambda img: img.convert("CMYK"), "JPEG"),
        (lambda img: img.convert("RGBA"), "PNG"),
        (lambda img: img.resize((1, 1)), "PNG"),
    ],
    ids=["cmyk-jpeg", "rgba-png", "1x1"],
)
def test_unusual_but_valid_images_are_classified(client, image, fmt):
    from model.features import features_to_image

    data = image_bytes(image(features_to_image(ROW).convert("RGB") if fmt == "JPEG" else features_to_image(ROW)), fmt)
    response = client.post("/predict", json={"image": b64(data)})
    assert response.status_code in (200, 422), response.json  # a 1x1 white image is blank: 422
    assert response.status_code != 500


@pytest.mark.parametrize(
    ("path", "status"),
    [("/predictions/5f0c1c8e-2f7b-4c1d-9a51-3f6f0d8f2a11", 404), ("/predictions/not-a-uuid", 422), ("/nope", 404)],
)
def test_unknown_ids_and_routes(client, path, status):
    response = client.get(path)
    assert response.status_code == status and response.json["error"]


def test_feedback_validation(client):
    answer = client.post("/predict", json={"instances": [ROW]}).json
    pid, token = answer["predictions"][0]["id"], answer["feedback_token"]
    assert client.post(f"/predictions/{pid}/feedback", json={"label": 12, "token": token}).status_code == 422
    assert client.post(f"/predictions/{pid}/feedback", json={"label": "3", "token": token}).status_code == 422
    assert client.post(f"/predictions/{uuid.uuid4()}/feedback", json={"label": 3, "token": token}).status_code == 404


def test_wrong_method(client):
    response = client.get("/predict")
    assert response.status_code == 405 and response.json["error"] == "method_not_allowed"
