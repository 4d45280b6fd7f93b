"""Pipeline timing: ingest -> train -> validate/promote on digits, through the same task bodies the DAGs run.

    python -m bench.pipeline        (make bench-pipeline)

Starts a throw-away MongoDB-wire server and MLflow server, runs each lifecycle task body once and prints
the seconds each took and the total (the issue's target: <= 60 s from ingest to promotion).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ops import services


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mlops-pipeline-bench-"))
    procs = []
    try:
        mongo = services.mongo(services.free_port(), ":memory:", workdir / "mongo.log")
        mlflow = services.mlflow(services.free_port(), workdir / "mlflow", workdir / "mlflow.log")
        for service in (mongo, mlflow):
            procs.append(services.start(service))
        services.wait_healthy(mongo, procs[0])
        services.wait_healthy(mlflow, procs[1])
        os.environ.update(
            {
                "MLOPS_ENV_FILE": str(workdir / "none.env"),
                "MONGO_URI": mongo.url,
                "MLFLOW_TRACKING_URI": mlflow.url,
                "MODEL_NAME": "pipeline-bench",
                "EXPERIMENT_NAME": "pipeline-bench",
                "DATA_DIR": str(workdir / "data"),
                "MODEL_CACHE_DIR": str(workdir / "cache"),
            }
        )
        from plugins.mlops_platform import tasks

        timings = {}
        started = time.perf_counter()
        snapshot = tasks.ingest(None)
        timings["ingest"] = time.perf_counter() - started
        mark = time.perf_counter()
        trained = tasks.train(snapshot)
        timings["train"] = time.perf_counter() - mark
        mark = time.perf_counter()
        decision = tasks.validate(trained)
        timings["validate"] = time.perf_counter() - mark
        total = time.perf_counter() - started
    finally:
        for proc in procs:
            services.stop_group(proc.pid)
        shutil.rmtree(workdir, ignore_errors=True)
    for step, seconds in timings.items():
        print(f"{step:<9} {seconds:6.2f} s")
    print(f"{'total':<9} {total:6.2f} s  (ingest -> {decision['outcome']}, holdout accuracy {trained['accuracy']:.4f})")
    return 0 if decision["outcome"] == "promoted" else 1


if __name__ == "__main__":
    raise SystemExit(main())
