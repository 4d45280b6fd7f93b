"""Gunicorn settings for the prediction service (bind and workers come from the command line)."""

import gc
import os
import shutil
import tempfile
from pathlib import Path

# One BLAS thread per worker: the workers already use every core, and a thread pool per worker
# fighting over them made a 1,000-row prediction ~40% slower (measured with bench/).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# The cyclic GC's first generation collects after 700 new container objects: a 1,000-row request's
# parsed JSON alone is 1,000 lists, each scanned in the middle of being built. 10,000 lets a request's
# objects die by reference count first: parsing and answering a 1,000-row request went from 6.0 to
# 4.4 ms (bench/). The model and imports are frozen out of the GC after each load (model_manager).
gc.set_threshold(10_000, 20, 10)

# gthread, not sync: a sync worker reads a request to its end before anything else, so two clients
# that sent half a request each held both workers and /health went unanswered (issue #15, item 12).
# gthread waits for a request's first bytes in its poller and serves requests on a pool of threads,
# so a slow client holds one thread, not a worker; ours adds a deadline to every socket read and
# write (APP_READ_TIMEOUT), so it holds it for seconds, not forever. Production still belongs behind
# a buffering proxy.
worker_class = "app.http_worker.DeadlineThreadWorker"
workers = int(os.environ.get("APP_WORKERS", "2"))
threads = int(os.environ.get("APP_THREADS", "16"))
timeout = 60
graceful_timeout = 20
keepalive = 5
# No --preload: every worker builds its own app, MongoDB client and model (pymongo is not fork-safe).
preload_app = False
# prometheus_client's multiprocess mode, so /metrics counts every worker (app/metrics.py): the variable
# must be set before any worker imports prometheus_client, and the directory start empty.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="mlops-metrics-"))

# Gunicorn 26 opens a control socket shared by every instance under $HOME unless told otherwise.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = "info"


def worker_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """Drain the prediction log queue before the worker goes away."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from app import shutdown

        shutdown(app)


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    """A fresh metrics directory: files of an earlier run would be counted again."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """A dead worker's live gauges leave the sums (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ARG001 - gunicorn's hook signature
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
