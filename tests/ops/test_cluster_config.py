"""ops/cluster.py's configuration, checked without starting it (`make test-cluster` starts it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config.hostnames import hostname
from config.settings import ROOT
from ops.cluster import Cluster, ClusterSettings


def _proxy_directives(path: Path) -> set[str]:
    lines = {re.sub(r"\s+", " ", line.split("#")[0].strip()) for line in path.read_text().splitlines()}
    return {
        line
        for line in lines
        if line.startswith(("proxy_", "client_"))
        and not line.startswith(("proxy_pass", "proxy_temp", "client_body_temp"))
    }


def test_the_cluster_proxy_behaves_as_the_compose_proxy():
    nginx = ROOT / "config" / "nginx"
    assert _proxy_directives(nginx / "cluster.conf") == _proxy_directives(nginx / "app.conf")


@pytest.fixture
def cluster(tmp_path):
    return Cluster(ClusterSettings(dir=tmp_path / "cluster"))


def test_no_two_hosts_share_a_directory_and_nothing_is_under_var(cluster):
    built = cluster.build()
    hosts = [*cluster.workers, *cluster.apps]
    assert len(cluster.workers) >= 2 and len(cluster.apps) >= 2
    seen: dict[str, str] = {}
    for host in hosts:
        env = built[host.name].env
        for key in ("DATA_DIR", "MODEL_CACHE_DIR", "OUTBOX_DIR"):
            path = Path(env[key])
            assert path.is_relative_to(host.root), f"{host.name} {key}={path}"
            assert not path.is_relative_to(ROOT / "var"), f"{host.name} {key} is under the shared var/"
            assert str(path) not in seen, f"{host.name} and {seen.get(str(path))} share {path}"
            seen[str(path)] = host.name
    worker_envs = [built[w.name].env for w in cluster.workers]
    assert len({e["AIRFLOW_HOME"] for e in worker_envs}) == len(worker_envs)
    assert len({e["MLOPS_HOSTNAME"] for e in worker_envs}) == len(worker_envs)
    assert len({e["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for e in worker_envs}) == len(worker_envs)
    # one set of keys for every Airflow component, as compose's .env gives them
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
        assert len({built[name].env[key] for name in built if name.startswith(("airflow", "worker"))}) == 1
    assert all(built[name].env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" for name in built if "airflow" in name)


def test_the_cluster_ports_clear_make_up_and_each_other(cluster):
    s = cluster.settings
    ports = [s.postgres_port, s.redis_port, s.mongo_port, s.mlflow_port, s.airflow_port, s.scheduler_health_port,
             s.proxy_port, s.log_server_port + 50, *(s.app_port + i for i in range(s.apps)),
             *(s.log_server_port + i for i in range(s.workers))]  # fmt: skip
    assert len(set(ports)) == len(ports)
    # make up's defaults, Airflow's own log and health ports, the system PostgreSQL and Redis
    assert not set(ports) & {27017, 5001, 8080, 5000, 8793, 8794, 8974, 5432, 6379}


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx here (make cluster-deps installs it)")
def test_the_rendered_nginx_config_is_valid(cluster):
    service = cluster.build()["nginx"]
    conf = service.command[service.command.index("-c") + 1]
    result = subprocess.run(
        ["nginx", "-t", "-p", str(cluster.root / "nginx"), "-c", conf, "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_hostname_airflow_records_is_the_hosts_own(monkeypatch):
    monkeypatch.setenv("MLOPS_HOSTNAME", "worker-b")
    assert hostname() == "worker-b"
    monkeypatch.delenv("MLOPS_HOSTNAME")
    assert hostname()


def test_no_secret_is_on_a_command_line(cluster):
    """Any local user reads command lines (ps, /proc/<pid>/cmdline), and the PID files record them:
    passwords and keys go to the services through their environment."""
    built = cluster.build()
    secrets = list(cluster.secrets.values())
    for name, service in built.items():
        command = " ".join(service.command)
        assert not [s for s in secrets if s in command], f"{name}'s command line carries a secret"
