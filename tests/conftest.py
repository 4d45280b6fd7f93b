"""Session fixtures: real throw-away servers (MongoDB-wire, MLflow), an Airflow home, a trained champion.

Nothing here touches the `make up` stack or var/: every server listens on a free port and keeps its
data in a temporary directory removed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Airflow or reads settings: an isolated Airflow home and no developer .env.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
os.environ["MLOPS_ENV_FILE"] = str(_SESSION_DIR / "no.env")
from ops import services  # noqa: E402

_AIRFLOW_HOME = _SESSION_DIR / "airflow"
os.environ.update(services.airflow_env(_AIRFLOW_HOME, services.free_port(), "admin", "admin-test-password"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["TASK_RETRY_DELAY_SECONDS"] = "1"  # retries are tested, their waiting need not be

import pytest  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from model.registry import RegistryConfig  # noqa: E402
from model.sources import SourcePolicy  # noqa: E402


class Servers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mongo = services.mongo(services.free_port(), ":memory:", root / "mongo.log")
        self.mlflow = services.mlflow(services.free_port(), root / "mlflow", root / "mlflow.log")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.procs["mongo"] = services.start(self.mongo)
        self.procs["mlflow"] = services.start(self.mlflow)
        services.wait_healthy(self.mongo, self.procs["mongo"])
        services.wait_healthy(self.mlflow, self.procs["mlflow"])

    def restart_mongo(self) -> None:
        """Start the MongoDB-wire server again on the same port (its :memory: data is gone)."""
        self.procs["mongo"] = services.start(self.mongo)
        services.wait_healthy(self.mongo, self.procs["mongo"])

    def stop_mongo(self) -> None:
        services.stop_group(self.procs["mongo"].pid)

    def stop(self) -> None:
        for proc in self.procs.values():
            services.stop_group(proc.pid)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    root = _SESSION_DIR / "servers"
    root.mkdir(exist_ok=True)
    srv = Servers(root)
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


MLFLOW2_VENV = Path(os.environ.get("MLFLOW2_VENV", Path.home() / ".cache" / "mlops-platform" / "mlflow-2.7.1"))
MLFLOW2_USER, MLFLOW2_PASSWORD = "admin", "s3cret-pass-0123"


@pytest.fixture(scope="session")
def mlflow2() -> Iterator[services.Service]:
    """An MLflow 2.7.1 server with basic auth, as DagsHub runs, on 127.0.0.2 (so it is not 'local').

    Its venv is built once by `make mlflow2` (part of `make test`). Its admin's password hash is
    re-made with 1,000 PBKDF2 rounds: with 2.7.1's default of 600,000 every request spent 2-3 s
    hashing here (a server with an auth cache, or DagsHub's own auth, does not pay that per request).
    """
    import sqlite3

    from werkzeug.security import generate_password_hash

    if not (MLFLOW2_VENV / ".installed").exists():
        pytest.fail(f"no MLflow 2.7.1 venv at {MLFLOW2_VENV}: run `make mlflow2` (make test does)")
    root = _SESSION_DIR / "mlflow2"
    root.mkdir(exist_ok=True)
    ini = root / "auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {MLFLOW2_USER}\n"
        f"admin_password = {MLFLOW2_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server = services.mlflow(
        services.free_port(),
        root,
        root / "mlflow.log",
        app_name="basic-auth",
        bin_dir=MLFLOW2_VENV / "bin",
        host="127.0.0.2",
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
            "PYTHONPATH": "",
        },
    )
    proc = services.start(server)
    try:
        services.wait_healthy(server, proc)
        with sqlite3.connect(root / "auth.db") as conn:
            fast = generate_password_hash(MLFLOW2_PASSWORD, method="pbkdf2:sha256:1000")
            conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (fast, MLFLOW2_USER))
        yield server
    finally:
        services.stop_group(proc.pid)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """`airflow db migrate` once, into the session's throw-away AIRFLOW_HOME."""
    log = _SESSION_DIR / "airflow-migrate.log"
    with log.open("wb") as out:
        code = subprocess.call(
            [str(services.BIN / "airflow"), "db", "migrate"],
            env=services.base_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if code != 0:
        raise RuntimeError("airflow db migrate failed:\n" + services.tail(log, 40))


@pytest.fixture(scope="session")
def dagbag(airflow_db: None):  # noqa: ANN201
    from airflow.dag_processing.dagbag import DagBag

    from config.settings import ROOT

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="session")
def mongo_client(servers: Servers) -> Iterator[MongoClient]:
    client: MongoClient = MongoClient(servers.mongo.url, serverSelectionTimeoutMS=3000, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def db(mongo_client: MongoClient, request: pytest.FixtureRequest):  # noqa: ANN201
    """A fresh database per test."""
    name = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:50]
    mongo_client.drop_database(name)
    return mongo_client[name]


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


def registry_config_for(servers: Servers, model_name: str) -> RegistryConfig:
    return RegistryConfig(
        tracking_uri=servers.mlflow.url, model_name=model_name, experiment_name=model_name, http_retries=0
    )


# the upload sets cost ~10 s a process; tests/model/test_digits_uploads.py checks them and the gate's use
FAST_GATE = {"evaluation_sets": False}


@pytest.fixture(scope="session", autouse=True)
def digits_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config/params.yaml on scikit-learn's 8x8 digits: the fast source every test trains on (the DAG
    tasks read PARAMS_PATH); the default, MNIST, is for `make up`."""
    import yaml

    from config.settings import ROOT

    raw = yaml.safe_load((ROOT / "config" / "params.yaml").read_text())
    raw["data"]["source"] = "digits"
    raw["promotion"]["evaluation_sets"] = False
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    os.environ["PARAMS_PATH"] = str(path)
    return path


@pytest.fixture(scope="session")
def champion(servers: Servers, mongo_client: MongoClient, tmp_session: Path) -> dict[str, object]:
    """A model `digits-app` with a promoted champion, trained once per session through model.lifecycle."""
    from config.settings import ROOT
    from model import lifecycle
    from model.params import load_params
    from model.registry import connect
    from model.snapshot import fetch_snapshot

    registry = connect(registry_config_for(servers, "digits-app"))
    params = load_params(ROOT / "config" / "params.yaml", data={"source": "digits"}, promotion=FAST_GATE)
    db = mongo_client[LIFECYCLE_DB]
    snapshot = lifecycle.ingest(params, tmp_session / "data", db, SourcePolicy(tmp_session))
    path = fetch_snapshot(db, tmp_session / "data", snapshot["hash"])
    trained = lifecycle.train_and_register(params, path, registry, db)
    decision = lifecycle.validate_and_promote(
        params, path, trained["version"], registry, db, tmp_session / "validation"
    )
    assert decision["outcome"] == "promoted", decision
    events = list(db.model_events.find({"model_name": "digits-app"}))
    return {
        "model_name": "digits-app",
        "version": trained["version"],
        "snapshot": snapshot,
        "snapshot_path": path,  # the session's copy, as ingest's host keeps it
        "params": params,
        "events": events,
    }


SERVED_DB = "served"
LIFECYCLE_DB = "session_lifecycle"


def trust_champion(db, champion: dict[str, object]) -> None:
    """Give `db` the gate's records for the session champion, as if the app shared the gate's database.

    In production the gate and the app use one database; tests give each app its own, so the records
    that let it load the champion (model/provenance.py) are copied there.
    """
    for event in champion["events"]:  # type: ignore[attr-defined]
        db.model_events.replace_one({"_id": event["_id"]}, event, upsert=True)


def vouch(db, tracking_uri: str, model_name: str, version: str, tmp: Path) -> str:
    """Record a `promoted` digest for a version the test put in the registry by hand (no gate ran)."""
    from model.provenance import PROMOTED, digest
    from model.registry import Registry
    from model.store import record_event

    registry = Registry(RegistryConfig(tracking_uri, model_name, model_name, http_retries=0))
    files = digest(registry.download_version(version, tmp / f"vouch-{model_name}-{version}"))
    record_event(db, PROMOTED, model_name=model_name, version=str(version), outcome=PROMOTED, digest=files)
    return files


@pytest.fixture(scope="session")
def served_app(  # noqa: ANN201
    servers: Servers, champion: dict[str, object], mongo_client: MongoClient, tmp_path_factory: pytest.TempPathFactory
):
    """The app under gunicorn (2 workers) on a free port, serving the session's champion."""

    root = tmp_path_factory.mktemp("gunicorn")
    trust_champion(mongo_client[SERVED_DB], champion)
    env = {
        "MONGO_URI": servers.mongo.url,
        "MONGO_DB": SERVED_DB,
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MODEL_NAME": str(champion["model_name"]),
        "MODEL_CACHE_DIR": str(root / "cache"),
        "OUTBOX_DIR": str(root / "outbox"),
        "LOG_FLUSH_SECONDS": "0.05",
        "APP_READ_TIMEOUT": "3",  # test_slow_clients waits for it
        "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),  # test_metrics looks at whose files are there
    }
    service, proc = start_ready_app(root, env, workers=2)
    yield service
    services.stop_group(proc.pid)


def start_ready_app(root: Path, env: dict[str, str], workers: int = 1, timeout: float = 60):  # noqa: ANN201
    """The app under gunicorn on a free port, once /health says it serves a model: (service, process)."""
    import requests

    service = services.app(services.free_port(), root / "app.log", env=env, workers=workers)
    proc = services.start(service)
    services.wait_healthy(service, proc)
    deadline = time.monotonic() + timeout
    while requests.get(f"{service.url}/health", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            services.stop_group(proc.pid)
            raise RuntimeError("gunicorn never became ready:\n" + services.tail(service.log, 30))
        time.sleep(0.2)
    return service, proc
