"""An image model scores a zip of images through score_batch (dag.test) against the session's servers.

The app and the worker each have their own directories, as on two hosts: the upload and the result
reach the other side through MongoDB GridFS only.
"""

from __future__ import annotations

import io
import zipfile

import pandas as pd
from gridfs import GridFSBucket

from app import create_app, shutdown
from model.kinds.digits import load_digits_dataset
from tests.app.conftest import app_settings, png_bytes, wait_for
from tests.conftest import trust_champion

DB = "image_batch_test"


def test_a_zip_of_images_is_scored_by_a_worker_on_another_host(
    servers, champion, dagbag, mongo_client, monkeypatch, tmp_path
):
    worker, app_host = tmp_path / "worker", tmp_path / "app"
    for key, value in {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": DB,
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MODEL_NAME": str(champion["model_name"]),
        "DATA_DIR": str(worker / "data"),
        "MODEL_CACHE_DIR": str(worker / "cache"),
    }.items():
        monkeypatch.setenv(key, value)
    trust_champion(mongo_client[DB], champion)
    app = create_app(app_settings(servers, app_host, str(champion["model_name"]), DB))
    try:
        wait_for(lambda: app.extensions["models"].current is not None, message="the champion to load")
        runs: list[dict] = []
        app.extensions["batch_trigger"] = lambda conf, run_id: runs.append(conf) or run_id
        digits = load_digits_dataset()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for i in range(3):
                archive.writestr(f"digits/{i}-true{digits.y[i]}.png", png_bytes(digits.X[i]))
        client = app.test_client()
        csv = client.post("/batches", data={"file": (io.BytesIO(b"a\n1\n"), "rows.csv")})
        assert csv.status_code == 415 and "a .zip of images" in csv.get_json()["message"]
        response = client.post("/batches", data={"file": (io.BytesIO(buf.getvalue()), "digits.zip")})
        assert response.status_code == 202, response.get_json()
        batch_id = response.get_json()["id"]
        assert dagbag.get_dag("score_batch").test(run_conf=runs[-1]).state == "success"
        status = client.get(f"/batches/{batch_id}").get_json()
        assert status["status"] == "succeeded" and status["rows"] == 3, status
        result = pd.read_csv(io.BytesIO(client.get(f"/batches/{batch_id}/result").data))
        assert result["row"].tolist() == [f"digits/{i}-true{digits.y[i]}.png" for i in range(3)]
        assert result["label"].tolist() == digits.y[:3].tolist()
        assert mongo_client[DB].predictions.count_documents({"batch_id": batch_id, "source": "batch"}) == 3
        stored = GridFSBucket(mongo_client[DB], "batch_files").find({"metadata.batch_id": batch_id})
        files = {f.filename for f in stored}
        assert files == {f"{batch_id}/input.zip", f"{batch_id}/result.csv"}, files
        on_disk = [p.name for p in tmp_path.rglob("*") if batch_id in p.name or p.suffix == ".zip"]
        assert on_disk == [], f"no host keeps a batch file: {on_disk}"
    finally:
        shutdown(app)
