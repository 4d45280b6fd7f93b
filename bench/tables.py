"""Table benchmark: a 200-tree forest behind the imputers, served and batch-scored, on this machine.

    python -m bench.tables            # the full run (make bench)
    python -m bench.tables --tiny     # seconds, so the script cannot rot (tests)

Trains Palmer penguins (as its package ships it: `NA` cells) into a RandomForest(200) champion through
the lifecycle's own task bodies, then:
- single rows: our app (compiled serving, every prediction logged) against `mlflow models serve` on the
  same champion, with wrk at c=1 and c=16; and our app serving the same forest trained on body mass
  (a regressor: value and interval);
- a batch: a CSV of penguins rows (sampled with their missing cells, numbers jittered) scored by the
  score_batch task body, every prediction logged; rows/s end to end, and every row counted in MongoDB.
Prints the figures and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pymongo import MongoClient

from bench.bench import RESULTS, ROOT, Bench, alternate, promote, wrk
from model import blobs
from model.ids import id_floor
from model.params import load_params
from ops import services

MODEL = "bench-penguins"
DB = "bench_tables"
PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
ROW = {"island": "Biscoe", "bill_length_mm": 46.5, "bill_depth_mm": None, "flipper_length_mm": 218,
       "body_mass_g": 5200, "sex": "male", "year": 2008}  # fmt: skip
REGRESSOR = "bench-penguins-mass"  # the same forest predicting body mass: a regressor's row, value and interval
# the rows whose body mass is missing are the ones missing the bills too: without them, bills never are
REGRESSOR_ROW = {**{k: v for k, v in ROW.items() if k != "body_mass_g"}, "bill_depth_mm": 15.0, "species": "Gentoo"}


def batch_csv(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` penguins, drawn with their missing cells, the measurements jittered so rows differ."""
    source = pd.read_csv(PENGUINS, keep_default_na=False, dtype=str)
    rng = np.random.default_rng(seed)
    frame = source.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        jittered = (numbers * rng.normal(1, 0.02, rows)).round(1).astype(str)
        frame[column] = jittered.where(numbers.notna(), "NA")
    frame.to_csv(path, index=False)


def score_batch(workdir: Path, mongo_url: str, mlflow_url: str, rows: int) -> dict[str, Any]:
    """One batch through the score_batch task body, as an Airflow worker runs it; timed end to end."""
    from config.settings import Settings
    from plugins.mlops_platform import batches

    batch_id = str(uuid.uuid4())
    upload = workdir / f"{batch_id}.csv"
    batch_csv(upload, rows)
    size = upload.stat().st_size
    client: MongoClient = MongoClient(mongo_url, tz_aware=True)
    blobs.store_batch_input(client[DB], batch_id, "csv", upload.read_bytes())  # what POST /batches stores
    now = datetime.now(UTC)
    client[DB].batches.insert_one({"_id": batch_id, "status": "pending", "created_at": now, "updated_at": now,
                                   "format": "csv", "model_name": MODEL})  # fmt: skip
    settings = Settings(
        mongo_uri=mongo_url,
        mongo_db=DB,
        mlflow_tracking_uri=mlflow_url,
        model_name=MODEL,
        model_cache_dir=workdir / "batch-cache",
    )
    started = time.perf_counter()
    summary = batches.score(batch_id, "bench", settings)
    seconds = time.perf_counter() - started
    # the batch's ids carry its creation time: count them through the _id index, not by scanning the log
    ids = {"$gte": id_floor(now), "$lt": id_floor(now + timedelta(milliseconds=1))}
    stored = client[DB].predictions.count_documents({"_id": ids})
    return {
        "rows": rows,
        "file_mb": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "status": summary["status"],
        "stored": stored,
        "lost": rows - stored,
    }


def champion(workdir: Path, client: MongoClient, mlflow_url: str, name: str, target: str) -> str:
    """A RandomForest(200) on penguins predicting `target`, through the lifecycle's task bodies to
    champion of model `name` (task_type auto: a class for species, a number for body mass)."""
    raw = yaml.safe_load((ROOT / "config" / "params.yaml").read_text())
    raw["task"] = "tabular"
    raw["tabular"] = {**raw["tabular"], "source": "penguins.csv", "target": target}
    raw["train"] = {**raw["train"], "estimator": "random_forest", "hyperparameters": {"n_estimators": 200}}
    (workdir / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return str(promote(load_params(workdir / f"{name}.yaml"), name, client[DB], mlflow_url, workdir)["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tables")
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes: checks the script works")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--batch-rows", type=int, default=None)
    args = parser.parse_args(argv)
    duration = args.duration or (1 if args.tiny else 10)
    rounds = args.rounds or (1 if args.tiny else 3)
    batch_rows = args.batch_rows or (20_000 if args.tiny else 1_000_000)

    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-tables-"))
    bench = Bench(args.tiny, workdir)
    results: dict[str, Any] = {"cores": os.cpu_count(), "started": datetime.now(UTC).isoformat(), "runs": []}
    try:
        mongo = bench.start(services.mongo(services.free_port(), str(workdir / "mongo"), workdir / "mongo.log"))
        mlflow = bench.start(services.mlflow(services.free_port(), workdir / "mlflow", workdir / "mlflow.log"))
        (workdir / "penguins.csv").write_bytes(PENGUINS.read_bytes())
        client: MongoClient = MongoClient(mongo.url, tz_aware=True)
        for name, target in ((MODEL, "species"), (REGRESSOR, "body_mass_g")):
            version = champion(workdir, client, mlflow.url, name, target)
            print(f"champion: {name} v{version} (RandomForest, 200 trees, imputers; target {target})", flush=True)

        targets = {
            "ours": bench.app(mongo.url, mlflow.url, log_predictions=True, model=MODEL, db=DB),
            "mlflow": bench.mlflow_serve(mlflow.url, model=MODEL),
            "regressor": bench.app(mongo.url, mlflow.url, log_predictions=True, model=REGRESSOR, db=DB),
        }
        import requests

        results["serving"] = requests.get(f"{targets['ours'].url}/model-info", timeout=10).json()["serving"]
        results["regressor_serving"] = requests.get(f"{targets['regressor'].url}/model-info", timeout=10).json()[
            "serving"
        ]
        bodies = {
            "ours": (workdir / "ours.json", {"instances": [ROW]}, "/predict"),
            "mlflow": (workdir / "mlflow.json", {"dataframe_records": [ROW]}, "/invocations"),
            "regressor": (workdir / "regressor.json", {"instances": [REGRESSOR_ROW]}, "/predict"),
        }
        for path, body, _ in bodies.values():
            path.write_text(json.dumps(body))
        for name, service in targets.items():  # warm-up, and both answer the same row
            path, body, route = bodies[name]
            response = requests.post(service.url + route, json=body, timeout=30)
            assert response.status_code == 200, (name, response.text)
            wrk(service.url + route, path, 4, 1)
        results["runs"] += alternate(targets, bodies, [1, 16], rounds, duration)
        bench.stop()  # the batch has the machine to itself, as a worker host would
        bench.procs.clear()
        mongo = bench.start(services.mongo(services.free_port(), str(workdir / "mongo"), workdir / "mongo.log"))
        mlflow = bench.start(services.mlflow(services.free_port(), workdir / "mlflow", workdir / "mlflow.log"))
        results["batch"] = score_batch(workdir, mongo.url, mlflow.url, batch_rows)
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    results["summary"] = summarize(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"tables-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-tiny' if args.tiny else ''}.json"
    out.write_text(json.dumps(results, indent=2))
    print_summary(results)
    print(f"results: {out}")
    return 0 if results["batch"]["lost"] == 0 and results["batch"]["status"] == "succeeded" else 1


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in {(r["target"], r["concurrency"]) for r in results["runs"]}:
        runs = [r for r in results["runs"] if (r["target"], r["concurrency"]) == key]
        summary[f"{key[0]}@{key[1]}"] = {
            "rps": round(statistics.median(r["rps"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50"] for r in runs), 3),
            "p99_ms": round(statistics.median(r["p99"] for r in runs), 3),
            "errors": sum(r["errors"] + r["non2xx"] for r in runs),
        }
    return summary


def print_summary(results: dict[str, Any]) -> None:
    s, b = results["summary"], results["batch"]
    print(f"\nRandomForest(200) on penguins, served by {results['serving']['engine']}; medians of the rounds")
    for c in (1, 16):
        ours, theirs = s[f"ours@{c}"], s[f"mlflow@{c}"]
        print(
            f"  c={c:<3} ours {ours['rps']:7.0f} req/s p50 {ours['p50_ms']:6.2f} ms p99 {ours['p99_ms']:6.2f} ms | "
            f"mlflow models serve {theirs['rps']:6.0f} req/s p50 {theirs['p50_ms']:6.2f} ms | "
            f"{ours['rps'] / theirs['rps']:.1f}x"
        )
    for c in (1, 16):
        row = s[f"regressor@{c}"]
        print(
            f"  c={c:<3} the same forest as a regressor (value and interval, served by "
            f"{results['regressor_serving']['engine']}): {row['rps']:7.0f} req/s p50 {row['p50_ms']:6.2f} ms "
            f"p99 {row['p99_ms']:6.2f} ms"
        )
    print(
        f"batch: {b['rows']:,} rows ({b['file_mb']} MB CSV) in {b['seconds']} s = {b['rows_per_s']:,} rows/s end to "
        f"end, {b['stored']:,} predictions logged, lost {b['lost']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
