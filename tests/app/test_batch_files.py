"""Batch files in MongoDB GridFS: names built from the batch id (never read from a document), a quota and a
retention (issue #15, item 3), counted and applied in GridFS (issue #17, part 3)."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app, shutdown
from model import blobs
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
def test_a_batch_file_name_is_built_from_a_batch_id_only(batch_id, name):
    with pytest.raises(ValueError, match="not a batch file"):
        blobs.batch_file_name(batch_id, name)


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
    old = str(uuid.uuid4())
    blobs.store_batch_input(db, old, "zip", b"x" * 50_000)
    week_ago = datetime.now(UTC) - timedelta(days=8)
    db["batch_files.files"].update_one({"metadata.batch_id": old}, {"$set": {"uploadDate": week_ago}})
    app = create_app(app_settings(servers, tmp_path, champion["model_name"], db.name, max_batches_bytes=2_000))
    app.extensions["batch_trigger"] = lambda conf, run_id: run_id
    try:
        wait_for(lambda: app.extensions["models"].current is not None)
        client = app.test_client()
        upload = a_zip()
        first = client.post("/batches", data={"file": (io.BytesIO(upload), "a.zip")})
        assert first.status_code == 202, first.json
        assert db["batch_files.files"].count_documents({"metadata.batch_id": old}) == 0, "past BATCH_RETENTION_DAYS"
        assert db["batch_files.chunks"].count_documents({"files_id": f"{old}/input.zip"}) == 0, "chunks too"
        refused = None
        for _ in range(30):
            refused = client.post("/batches", data={"file": (io.BytesIO(upload), "a.zip")})
            if refused.status_code != 202:
                break
        assert refused.status_code == 507 and refused.json["error"] == "batch_storage_full"
        assert "MAX_BATCHES_BYTES" in refused.json["message"]
        assert blobs.batch_bytes(db) <= 2_000, "the quota counts what GridFS holds"
    finally:
        shutdown(app)


def test_an_expired_result_is_no_longer_stored(client, db):
    """The result a worker stored is streamed back; once retention deleted it, the 404 says why."""
    batch_id = str(uuid.uuid4())
    db.batches.insert_one({"_id": batch_id, "status": "succeeded", "created_at": datetime.now(UTC)})
    csv = b"row,prediction_id,label,confidence\n" + b"0,x,1,0.9\n" * 100_000
    blobs.store_batch_result(db, batch_id, io.BytesIO(csv))
    served = client.get(f"/batches/{batch_id}/result")
    assert served.status_code == 200 and served.is_streamed and served.data == csv
    assert served.headers["Content-Length"] == str(len(csv)) and served.mimetype == "text/csv"
    blobs.expire_batch_files(db, retention_days=7, now=datetime.now(UTC) + timedelta(days=8))
    gone = client.get(f"/batches/{batch_id}/result")
    assert gone.status_code == 404 and "no longer stored" in gone.json["message"], gone.json


def test_a_corrupt_upload_is_refused_by_the_worker_with_a_clear_error(db):
    batch_id = str(uuid.uuid4())
    blobs.store_batch_input(db, batch_id, "csv", b"a,b\n" + b"1,2\n" * 200_000)
    name = f"{batch_id}/input.csv"
    db["batch_files.chunks"].update_one({"files_id": name, "n": 1}, {"$set": {"data": b"tampered"}})
    with pytest.raises(blobs.StoredFileCorrupt, match=f"uploaded file of batch {batch_id} is corrupt"):
        blobs.read_batch_input(db, batch_id, "csv")
    db["batch_files.chunks"].delete_one({"files_id": name, "n": 2})
    with pytest.raises(blobs.StoredFileCorrupt, match="chunk"):
        blobs.read_batch_input(db, batch_id, "csv")
    blobs.delete(db, blobs.BATCH_FILES, name)
    with pytest.raises(blobs.StoredFileMissing, match="not in MongoDB"):
        blobs.read_batch_input(db, batch_id, "csv")


def test_a_result_whose_bytes_changed_is_cut_short_not_served(db):
    """The result is streamed block by block; bytes that no longer hash to what was stored never all go out."""
    batch_id = str(uuid.uuid4())
    stored = b"row,label\n" + b"".join(f"{i},{i % 10}\n".encode() for i in range(300_000))
    blobs.store_batch_result(db, batch_id, io.BytesIO(stored))
    assert b"".join(blobs.stream(blobs.open_batch_result(db, batch_id), "the result")) == stored
    chunk = db["batch_files.chunks"].find_one({"n": 3})
    same_length = bytes(255 - b for b in chunk["data"])
    db["batch_files.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": same_length}})
    served = []
    with pytest.raises(blobs.StoredFileCorrupt, match="SHA-256"):
        for block in blobs.stream(blobs.open_batch_result(db, batch_id), "the result"):
            served.append(block)
    assert sum(map(len, served)) < len(stored), "the last block is held back until the digest matched"
