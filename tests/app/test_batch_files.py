"""Batch files: paths built from the batch id (never read from MongoDB), a quota and a retention (issue #15, item 3)."""

from __future__ import annotations

import io
import os
import time
import uuid
import zipfile
from datetime import UTC, datetime

import pytest

from app import create_app, shutdown
from model.batch import batch_file
from model.kinds.digits import load_digits_dataset
from tests.app.conftest import app_settings, png_bytes, wait_for
from tests.conftest import trust_champion


def a_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("0.png", png_bytes(load_digits_dataset().X[0]))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("batch_id", "name"),
    [
        ("../../etc", "passwd"),
        ("8c3e9a52-6d1f-4b7a-9e0c-2a4b6c8d0e1f", "../../../etc/passwd"),
        ("1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f", ".hidden"),
        ("x", "a"),
    ],
)
def test_batch_file_stays_inside_its_root(tmp_path, batch_id, name):
    with pytest.raises(ValueError, match="not a batch file"):
        batch_file(tmp_path, batch_id, name)


def test_a_document_cannot_choose_the_file_that_is_served(client, db):
    batch_id = str(uuid.uuid4())
    db.batches.insert_one(
        {"_id": batch_id, "status": "succeeded", "result_path": "/etc/passwd", "created_at": datetime.now(UTC)}
    )
    response = client.get(f"/batches/{batch_id}/result")
    assert response.status_code == 404, response.status_code
    assert b"root:" not in response.data


def test_uploads_have_a_quota_and_expire(servers, champion, db, tmp_path):
    trust_champion(db, champion)
    root = tmp_path / "batches"
    old = root / str(uuid.uuid4())
    old.mkdir(parents=True)
    (old / "input.zip").write_bytes(b"x" * 50_000)
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    app = create_app(app_settings(servers, tmp_path, champion["model_name"], db.name, max_batches_bytes=2_000))
    app.extensions["batch_trigger"] = lambda conf, run_id: run_id
    try:
        wait_for(lambda: app.extensions["models"].current is not None)
        client = app.test_client()
        upload = a_zip()
        first = client.post("/batches", data={"file": (io.BytesIO(upload), "a.zip")})
        assert first.status_code == 202, first.json
        assert not old.exists(), "a folder past BATCH_RETENTION_DAYS is deleted"
        refused = None
        for _ in range(30):
            refused = client.post("/batches", data={"file": (io.BytesIO(upload), "a.zip")})
            if refused.status_code != 202:
                break
        assert refused.status_code == 507 and refused.json["error"] == "batch_storage_full"
        assert "MAX_BATCHES_BYTES" in refused.json["message"]
    finally:
        shutdown(app)
