"""Serving benchmark: our app (logging on / off) against `mlflow models serve`, on this machine.

    python -m bench.bench            # the full run (make bench)
    python -m bench.bench --tiny     # a few seconds per step, so the script cannot rot (tests)

Starts its own MongoDB-wire server, MLflow server, a champion, the three servers under test (2 workers
each), drives them with wrk at several concurrencies alternating A B C A B C, then measures batch
throughput, one uploaded digit a request (to this 8x8 champion and to a model of the default's layout,
MNIST at 16x16), /statistics over many logged predictions, worker memory, and
checks that MongoDB holds exactly one document per prediction served. Prints a table and writes JSON to
bench/results/.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import operator
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import requests
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database

from model import lifecycle
from model.data import split
from model.features import image_to_features
from model.images import decode_image
from model.kinds.digits import load_digits_dataset
from model.params import Params, load_params
from model.registry import RegistryConfig, connect
from model.snapshot import fetch_snapshot
from model.sources import SourcePolicy
from model.statistics import rollup_increments
from ops import services

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LUA = Path(__file__).with_name("post.lua")
MODEL = "bench-digits"
DEFAULT_MODEL = "bench-default-digits"  # the default model's layout (MNIST at 16x16, MLP 256), for uploads


def wrk(url: str, body_file: Path, connections: int, seconds: int) -> dict[str, Any]:
    threads = max(1, min(2, connections))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA), url],
        env={**os.environ, "WRK_BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    result = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["ok"] = result["requests"] - result["non2xx"] - result["errors"]
    return result


def alternate(
    targets: dict[str, services.Service],
    bodies: dict[str, tuple[Path, Any, str]],
    concurrencies: list[int],
    rounds: int,
    duration: int,
    after: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """wrk against each target in turn (A B C A B C), per concurrency and round; prints each run."""
    runs = []
    for c in concurrencies:
        for r in range(rounds):
            for name, service in targets.items():
                path, _, route = bodies[name]
                res = wrk(service.url + route, path, c, duration)
                res.update(target=name, concurrency=c, round=r)
                runs.append(res)
                if after is not None:
                    after(name, res)
                print(
                    f"  c={c:<3} round {r} {name:<11} {res['rps']:8.0f} req/s  p50 {res['p50']:7.2f} ms"
                    f"  p99 {res['p99']:7.2f} ms  errors {res['errors'] + res['non2xx']}",
                    flush=True,
                )
    return runs


class Bench:
    def __init__(self, tiny: bool, workdir: Path) -> None:
        self.tiny = tiny
        self.dir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: dict[str, int] = {}

    def start(self, service: services.Service) -> services.Service:
        proc = services.start(service)
        self.procs.append(proc)
        self.pids[service.name] = proc.pid
        services.wait_healthy(service, proc)
        return service

    def stop(self) -> None:
        for proc in reversed(self.procs):
            services.stop_group(proc.pid)

    def app(
        self, mongo_url: str, mlflow_url: str, log_predictions: bool, model: str = MODEL, db: str = "bench"
    ) -> services.Service:
        name = f"{model}-app-log" if log_predictions else f"{model}-app-nolog"
        env = {
            "MLOPS_ENV_FILE": str(self.dir / "none.env"),
            "MONGO_URI": mongo_url,
            "MONGO_DB": db,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "MODEL_NAME": model,
            "MODEL_CACHE_DIR": str(self.dir / name / "cache"),
            "OUTBOX_DIR": str(self.dir / name / "outbox"),
            "LOG_PREDICTIONS": str(log_predictions).lower(),
        }
        service = services.app(services.free_port(), self.dir / f"{name}.log", env=env, workers=2)
        service.name = name
        self.start(service)
        deadline = time.monotonic() + 60
        while requests.get(f"{service.url}/health", timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never loaded the champion:\n{services.tail(service.log)}")
            time.sleep(0.2)
        return service

    def mlflow_serve(self, mlflow_url: str, model: str = MODEL) -> services.Service:
        port = services.free_port()
        service = services.Service(
            name=f"{model}-mlflow-serve",
            command=[
                str(services.BIN / "mlflow"), "models", "serve", "-m", f"models:/{model}@champion",
                "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "2",
            ],
            url=f"http://127.0.0.1:{port}",
            log=self.dir / f"{model}-mlflow-serve.log",
            healthy=lambda: services.http_ok(f"http://127.0.0.1:{port}/ping"),
            env={"MLFLOW_TRACKING_URI": mlflow_url},
            start_timeout=120,
        )  # fmt: skip
        return self.start(service)


def promote(params: Params, name: str, db: Database, mlflow_url: str, workdir: Path) -> dict[str, Any]:
    """Ingest, train and gate a model `name` through the lifecycle's task bodies: what train_and_register
    returned (its version is the champion, if the gate promoted it)."""
    registry = connect(RegistryConfig(mlflow_url, name, name))
    snapshot = lifecycle.ingest(params, workdir / "data", db, SourcePolicy(workdir))
    path = fetch_snapshot(db, workdir / "data", snapshot["hash"])
    trained = lifecycle.train_and_register(params, path, registry, db)
    lifecycle.validate_and_promote(params, path, trained["version"], registry, db, workdir / f"val-{name}")
    return trained


def worker_rss_mb(master: int) -> float:
    """Resident memory of everything a server's master process started (its workers)."""
    total_kb, stack = 0, _children(master)
    while stack:
        pid = stack.pop()
        stack.extend(_children(pid))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        total_kb += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return round(total_kb / 1024, 1)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def logged_total(db: Any) -> int:
    """Predictions the rollups have counted: cheap to poll, unlike counting documents (a full scan here)."""
    return int(sum(doc.get("count", 0) for doc in db.prediction_rollups.find({}, {"count": 1})))


def wait_logged(db: Any, expect: int | None = None, timeout: float = 300) -> int:
    """Wait until the rollups count `expect` predictions (or stop growing); returns their total."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        total = logged_total(db)
        if (expect is not None and total >= expect) or (expect is None and total == last):
            return total
        last = total
        time.sleep(1.0)
    return last


def settled_count(db: Any, expect: int | None = None, timeout: float = 300) -> int:
    """The prediction document count once the app's writers have caught up (the rollups count `expect`).

    Waits on the rollups, which the writers increment with every insert, then counts the documents once:
    a count every second would scan the whole log each time and slow the very writes it waits for.
    """
    wait_logged(db, expect, timeout)
    return int(db.predictions.count_documents({"kind": "prediction"}))


def load_log(db: Any, n: int, version: str) -> float:
    """Insert n realistic prediction records (with rollups) spread over the last 24 h; returns seconds."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    batch = 10_000
    for start in range(0, n, batch):
        size = min(batch, n - start)
        features = rng.integers(0, 17, size=(size, 64)).astype(float).tolist()
        labels = rng.integers(0, 10, size=size).tolist()
        docs = [
            {
                "_id": str(uuid.uuid4()),
                "kind": "prediction",
                "ts": now - timedelta(seconds=float(rng.uniform(0, 86_000))),
                "model_name": MODEL,
                "model_version": version,
                "source": "bench-load",
                "request_id": None,
                "input_hash": "",
                "features": features[i],
                "label": labels[i],
                "confidence": float(rng.uniform(0.3, 1.0)),
                "probabilities": [0.1] * 10,
                "latency_ms": float(rng.gamma(2.0, 1.0)),
            }
            for i in range(size)
        ]
        db.predictions.insert_many(docs, ordered=False)
        increments = rollup_increments(docs)
        db.prediction_rollups.bulk_write([UpdateOne({"_id": k}, u, upsert=True) for k, u in increments.items()])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench")
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes: checks the script works")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--log-docs", type=int, default=None, help="documents loaded before timing /statistics")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (make bench installs it: apt-get install wrk)", file=sys.stderr)
        return 2
    duration = args.duration or (1 if args.tiny else 10)
    rounds = args.rounds or (1 if args.tiny else 3)
    log_docs = args.log_docs if args.log_docs is not None else (5_000 if args.tiny else 1_000_000)
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    bench = Bench(args.tiny, workdir)
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "started": datetime.now(UTC).isoformat(),
        "duration_s": duration,
        "rounds": rounds,
        "runs": [],
    }
    try:
        mongo = bench.start(services.mongo(services.free_port(), str(workdir / "mongo"), workdir / "mongo.log"))
        mlflow = bench.start(services.mlflow(services.free_port(), workdir / "mlflow", workdir / "mlflow.log"))
        params = load_params(ROOT / "config" / "params.yaml", data={"source": "digits"})  # 8x8: 64-number rows
        client: MongoClient = MongoClient(mongo.url, tz_aware=True)
        version = promote(params, MODEL, client["bench"], mlflow.url, workdir)["version"]
        print(f"champion: {MODEL} v{version} ({params.train.estimator})", flush=True)

        targets = {
            "ours": bench.app(mongo.url, mlflow.url, log_predictions=True),
            "mlflow": bench.mlflow_serve(mlflow.url),
            "ours_nolog": bench.app(mongo.url, mlflow.url, log_predictions=False),
        }
        _, holdout = split(load_digits_dataset(), 0.25, 42)
        row = holdout.X[0].tolist()
        bodies = {
            "ours": (workdir / "ours.json", {"instances": [row]}, "/predict"),
            "ours_nolog": (workdir / "ours.json", {"instances": [row]}, "/predict"),
            "mlflow": (workdir / "mlflow.json", {"inputs": [row]}, "/invocations"),
        }
        for path, body, _ in bodies.values():
            path.write_text(json.dumps(body))
        for name, service in targets.items():  # warm-up
            path, _, route = bodies[name]
            wrk(service.url + route, path, 4, 1)
        db = client["bench"]
        baseline, baseline_logged = settled_count(db), logged_total(db)
        served_by_ours = 0

        def caught_up(name: str, res: dict[str, Any]) -> None:
            nonlocal served_by_ours
            if name == "ours":  # the next server is timed once the log has caught up, not while it does
                served_by_ours += res["ok"]
                wait_logged(db, baseline_logged + served_by_ours, timeout=120)

        results["runs"] += alternate(targets, bodies, concurrencies, rounds, duration, caught_up)

        # batches of 1,000 rows, back to back from one client (wrk: the client's own JSON encoding is not timed)
        batch_file = workdir / "batch.json"
        batch_file.write_text(json.dumps({"instances": np.tile(holdout.X, (3, 1))[:1000].tolist()}))
        res = wrk(targets["ours"].url + "/predict", batch_file, 1, duration)
        served_by_ours += res["ok"] * 1000
        # and one at a time, the log caught up before each: a request's own cost, not the database's backlog
        wait_logged(db, baseline_logged + served_by_ours, timeout=300)
        session, body, single = requests.Session(), batch_file.read_bytes(), []
        for _ in range(3 if args.tiny else 20):
            started = time.perf_counter()
            response = session.post(
                targets["ours"].url + "/predict", data=body, headers={"Content-Type": "application/json"}, timeout=60
            )
            single.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            served_by_ours += 1000
            wait_logged(db, baseline_logged + served_by_ours, timeout=60)
        results["batch_1000"] = {
            "requests": res["requests"],
            "rows_per_s": res["ok"] * 1000 / (res["duration_us"] / 1e6),
            "p50_ms": res["p50"],
            "p99_ms": res["p99"],
            "errors": res["errors"] + res["non2xx"],
            "single_median_ms": round(statistics.median(single) * 1000, 2),
            "single_rows_per_s": round(1000 / statistics.median(single)),
        }

        # one uploaded digit a request (#21: a PNG of 28-300 px, base64 JSON), through the upload preprocessing:
        # to the 8x8 champion, then to a model of the default's layout (MNIST at 16x16, the MLP of
        # config/params.yaml, trained on fewer digits: what it costs to serve, not how well it reads)
        png = upload_png()
        upload_file = workdir / "upload.json"
        upload_file.write_text(json.dumps({"image": base64.b64encode(png).decode()}))
        rows = 1_000 if args.tiny else 3_000
        default_params = load_params(
            ROOT / "config" / "params.yaml", data={"source": "mnist", "mnist_rows": rows, "font_rows": rows // 10}
        )
        promote(default_params, DEFAULT_MODEL, client["bench"], mlflow.url, workdir)
        default_app = bench.app(mongo.url, mlflow.url, log_predictions=True, model=DEFAULT_MODEL)
        # and the same digit as the row of 256 numbers the preprocessing makes of it, to the same model: the
        # request without decoding and preprocessing, timed in the same minutes as the uploads (the machine's
        # speed moves by half from one minute to the next; the difference is what the upload itself costs)
        row_file = workdir / "upload-row.json"
        row = image_to_features(decode_image(png, 10**6), 16).tolist()
        row_file.write_text(json.dumps({"instances": [row]}))
        default_layout, as_row = "16x16 (the default's)", "16x16 as a row"
        timed = {
            "8x8 (the champion above)": (targets["ours"], upload_file),
            default_layout: (default_app, upload_file),
            as_row: (default_app, row_file),
        }
        runs_of: dict[str, list[dict[str, Any]]] = {label: [] for label in timed}
        for _ in range(rounds):  # alternating, as above: a slow minute of the machine falls on all three
            for label, (service, body_file) in timed.items():
                res = wrk(service.url + "/predict", body_file, 1, duration)
                served_by_ours += res["ok"]
                runs_of[label].append(res)
                wait_logged(db, baseline_logged + served_by_ours, timeout=120)
        results["uploads"] = [
            {
                "layout": label,
                "image": "160x160 PNG, a dark digit on white",
                "rps": round(statistics.median(r["rps"] for r in runs), 1),
                "p50_ms": round(statistics.median(r["p50"] for r in runs), 3),
                "p99_ms": round(statistics.median(r["p99"] for r in runs), 3),
                "errors": sum(r["errors"] + r["non2xx"] for r in runs),
                "p50_ms_per_round": [round(r["p50"], 3) for r in runs],
            }
            for label, runs in runs_of.items()
            if label != as_row
        ]
        rows_16 = runs_of[as_row]
        row_p50s = [r["p50"] for r in rows_16]
        upload_p50s = [r["p50"] for r in runs_of[default_layout]]
        results["upload_row_16"] = {
            "p50_ms": round(statistics.median(row_p50s), 3),
            "p50_ms_per_round": [round(p, 3) for p in row_p50s],
            "errors": sum(r["errors"] + r["non2xx"] for r in rows_16),
            # per round, upload minus row: the rounds' own minutes, not medians taken from different ones
            "upload_minus_row_ms": round(statistics.median(map(operator.sub, upload_p50s, row_p50s)), 3),
        }

        # every prediction served is in MongoDB, exactly once (ids are unique, so a count can only fall short)
        stored = settled_count(db, expect=baseline_logged + served_by_ours) - baseline
        # wrk stops counting at its deadline, so requests in flight then are served and stored but not counted
        results["log_check"] = {
            "served": served_by_ours,
            "stored": stored,
            "lost": max(0, served_by_ours - stored),
            "in_flight_at_cutoff": max(0, stored - served_by_ours),
        }

        results["memory_mb"] = {name: worker_rss_mb(bench.pids[svc.name]) for name, svc in targets.items()}

        # /statistics over a large log
        load_seconds = load_log(db, log_docs, version)
        stat_times = []
        for _ in range(5 if args.tiny else 20):
            started = time.perf_counter()
            response = requests.get(targets["ours"].url + "/statistics", params={"window": "24h"}, timeout=60)
            stat_times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        results["statistics"] = {
            "documents": db.predictions.estimated_document_count(),
            "load_seconds": round(load_seconds, 1),
            "p50_ms": round(statistics.median(stat_times), 2),
            "max_ms": round(max(stat_times), 2),
            "total_reported": response.json()["total"],
        }
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(results)
    results["summary"] = summary
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-tiny' if args.tiny else ''}.json"
    out.write_text(json.dumps(results, indent=2))
    print_table(summary, results)
    print(f"results: {out}")
    return 0 if results["log_check"]["lost"] == 0 else 1


def upload_png() -> bytes:
    """A digit as a user uploads one: dark ink on white paper, 160x160, PNG."""
    from PIL import Image, ImageOps

    from model.digit_sets import render_digit

    ink = ImageOps.invert(render_digit(7, 0, 110, np.random.default_rng(0)))
    page = Image.new("L", (160, 160), 255)
    page.paste(ink, ((160 - ink.width) // 2, (160 - ink.height) // 2))
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for run in results["runs"]:
        key = f"{run['target']}@{run['concurrency']}"
        table.setdefault(key, []).append(run)
    summary = {}
    for key, runs in table.items():
        summary[key] = {
            "rps": round(statistics.median(r["rps"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50"] for r in runs), 3),
            "p95_ms": round(statistics.median(r["p95"] for r in runs), 3),
            "p99_ms": round(statistics.median(r["p99"] for r in runs), 3),
            "errors": sum(r["errors"] + r["non2xx"] for r in runs),
        }
    return summary


def print_table(summary: dict[str, Any], results: dict[str, Any]) -> None:
    print(f"\ncores: {results['cores']}, {results['rounds']} rounds x {results['duration_s']} s, medians")
    print(f"{'target':<12}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs mlflow':>11}")
    for key, row in summary.items():
        target, c = key.split("@")
        ref = summary.get(f"mlflow@{c}")
        ratio = f"{row['rps'] / ref['rps']:.2f}x" if ref and target != "mlflow" else ""
        print(
            f"{target:<12}{c:>4}{row['rps']:>10.0f}{row['p50_ms']:>9.2f}{row['p95_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{ratio:>11}"
        )
    b, s, lc = results["batch_1000"], results["statistics"], results["log_check"]
    print(
        f"batches of 1,000 rows, one client back to back: {b['rows_per_s']:,.0f} rows/s (p50 {b['p50_ms']:.1f} ms, "
        f"p99 {b['p99_ms']:.1f} ms, errors {b['errors']}); one at a time with the log caught up: "
        f"{b['single_rows_per_s']:,} rows/s (median {b['single_median_ms']} ms)"
    )
    for u in results["uploads"]:
        print(
            f"one uploaded digit a request ({u['image']}) to a {u['layout']} model, c=1: {u['rps']:.0f} req/s, "
            f"p50 {u['p50_ms']:.2f} ms, p99 {u['p99_ms']:.2f} ms, errors {u['errors']}"
        )
    r = results["upload_row_16"]
    print(
        f"the same digit as its row of 256 numbers to the 16x16 model, c=1: p50 {r['p50_ms']:.2f} ms, errors "
        f"{r['errors']}; the upload's own cost (decoding and preprocessing), p50 minus p50 in the same round: "
        f"{r['upload_minus_row_ms']:.2f} ms"
    )
    print(f"/statistics over {s['documents']:,} documents: p50 {s['p50_ms']} ms, max {s['max_ms']} ms")
    print(f"worker memory (2 workers): {results['memory_mb']} MB")
    print(
        f"prediction log: {lc['served']:,} acknowledged to clients, {lc['stored']:,} stored, lost {lc['lost']} "
        f"({lc['in_flight_at_cutoff']} more were in flight when wrk stopped counting)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
