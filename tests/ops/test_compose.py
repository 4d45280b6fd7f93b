"""docker-compose.yml, the Dockerfile and the locks, read statically: what the production stack needs to start.

No Docker engine runs here. Every rule is checked on the file as compose reads it (YAML merge keys
applied, `${VAR}` interpolated from .env.example) and, where `docker compose` or Debian's
`docker-compose` is installed, also on what that tool's `config` prints, so the rules hold for the
tool's own reading too. Each test names the blocker it guards against; `make compose-smoke` starts
the stack for real where an engine exists.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions, requires
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
IMAGE_ROOT = PurePosixPath("/opt/mlops")  # where the Dockerfile copies this repository

SERVICES = {
    "mongo", "postgres", "redis", "volume-init", "mlflow", "airflow-init", "airflow-apiserver",
    "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "app", "proxy",
}  # fmt: skip
# README "Production": `--scale airflow-worker=N --scale app=N`
SCALED = {"airflow-worker", "app"}
# the services that run project code, which builds config.settings.Settings from its environment
SETTINGS_READERS = {
    "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "airflow-worker", "app",
}  # fmt: skip
# the services whose processes keep a prediction journal and outbox (app/prediction_log.py)
JOURNAL_WRITERS = {"app": "/opt/mlops/var/outbox"}  # the service and its default OUTBOX_DIR in the image
# The apache/airflow entrypoint execs bash or python as asked and runs anything else as `airflow <args>`
# (scripts/docker/entrypoint_prod.sh); `airflow --help` of Airflow 3.3 with the Celery provider lists:
PASSED_THROUGH = {"bash", "python", "airflow"}
AIRFLOW_COMMANDS = {
    "assets", "backfill", "celery", "config", "connections", "dags", "db", "db-manager", "jobs", "partitions",
    "pools", "providers", "state-store", "tasks", "teams", "variables", "api-server", "cheat-sheet",
    "dag-processor", "info", "kerberos", "plugins", "rotate-fernet-key", "scheduler", "standalone",
    "triggerer", "version",
}  # fmt: skip
SAME_USER = [{"airflow", "50000"}, {"root", "0"}]
ONE_SHOT_RESTARTS = {"no", "on-failure"}
LONG_RUNNING_RESTARTS = {"always", "unless-stopped", "on-failure"}
# what the stack imports or runs that no base image may supply behind the lock's back
RUNTIME_PINS = {"apache-airflow-providers-celery", "celery", "redis", "psycopg2-binary", "scipy", "matplotlib"}
DEV_ONLY = {"pytest", "ruff", "mypy", "playwright", "schemathesis", "palmerpenguins", "vega-datasets"}
RUNTIME_PACKAGES = ("app", "model", "plugins", "dags", "config", "ops")


# ---------------------------------------------------------------------------------------------------
# Reading the compose file three ways


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate(value: Any, values: dict[str, str]) -> Any:
    """Compose's interpolation of every string in the parsed file: $$, ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V?e}."""
    if isinstance(value, dict):
        return {k: interpolate(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, values) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4)
        given = values.get(name)
        missing = not given if op and op.startswith(":") else given is None
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise ValueError(f"compose would refuse to start: {name} is unset ({arg})")
        return given or ""

    return _VAR.sub(substitute, value)


def compose_tools() -> dict[str, list[str]]:
    tools = {}
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        tools["docker compose"] = [docker, "compose"]
    if shutil.which("docker-compose"):
        tools["docker-compose"] = [shutil.which("docker-compose") or "docker-compose"]
    return tools


def tool_config(tool: list[str], env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`<tool> config` on the real file, with .env.example standing in for .env (the shell's COMPOSE_* aside)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env["COMPOSE_ENV_FILE"] = str(env_file)  # the services' env_file (default .env, absent in a clone)
    command = [*tool, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(env_file), "config"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text(ENV_EXAMPLE.read_text())
    return path


TOOLS = compose_tools()


# every rule runs on the file parsed here, and again on each installed tool's reading of it
@pytest.fixture(scope="module", params=["parsed here", *TOOLS])
def compose(request, env_file) -> dict[str, Any]:
    if request.param == "parsed here":
        return interpolate(yaml.safe_load(COMPOSE.read_text()), env_values(env_file))
    tool = TOOLS[request.param]
    if request.param == "docker compose":
        out = tool_config(tool, env_file, "--format", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    out = tool_config(tool, env_file)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


# ---------------------------------------------------------------------------------------------------
# A service's fields, in short or long syntax alike


def words(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


@dataclass(frozen=True)
class Mount:
    kind: str  # volume (named), anonymous, bind or tmpfs
    source: str | None
    target: str
    read_only: bool


def mounts(service: dict[str, Any]) -> list[Mount]:
    found = []
    for spec in service.get("volumes", []):
        if isinstance(spec, dict):
            kind, source = spec.get("type", "volume"), spec.get("source") or None
            if kind == "volume" and not source:
                kind = "anonymous"
            found.append(Mount(kind, source, spec["target"], bool(spec.get("read_only"))))
            continue
        parts = str(spec).split(":")
        if len(parts) == 1:
            found.append(Mount("anonymous", None, parts[0], False))
            continue
        source, target = parts[0], parts[1]
        mode = parts[2].split(",") if len(parts) > 2 else []
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        found.append(Mount(kind, source, target, "ro" in mode))
    return found


def published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host address, host port) of each port published on the host; a bare container port publishes none."""
    found = []
    for spec in service.get("ports", []):
        if isinstance(spec, dict):
            if spec.get("published") not in (None, ""):
                found.append((str(spec.get("host_ip") or "0.0.0.0"), str(spec["published"])))
            continue
        parts = str(spec).split("/")[0].split(":")
        if len(parts) == 2:
            found.append(("0.0.0.0", parts[0]))
        elif len(parts) == 3:
            found.append((parts[0] or "0.0.0.0", parts[1]))
    return found


def user_of(service: dict[str, Any], image: Image) -> str | None:
    """The user a service runs as: its own `user:`, else the Dockerfile's last USER (None: not our image)."""
    if service.get("user"):
        return str(service["user"]).split(":")[0]
    return image.user if "build" in service else None


def same_user(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and (a == b or any({a, b} <= pair for pair in SAME_USER))


def is_root(user: str | None) -> bool:
    return same_user(user, "root")


def under(path: str, parent: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(parent) or PurePosixPath(parent) in PurePosixPath(path).parents


def chowns(script_words: list[str]) -> list[tuple[str, str, bool]]:
    """(owner, path, recursive) for each `chown` in a command line or a `bash -c` script."""
    found = []
    for segment in re.split(r"&&|\|\||;|\||\n", " ".join(script_words)):
        try:
            tokens = shlex.split(segment)
        except ValueError:
            continue
        if "chown" not in tokens:
            continue
        args = tokens[tokens.index("chown") + 1 :]
        recursive = any(a in ("-R", "--recursive") for a in args)
        positional = [a for a in args if not a.startswith("-")]
        if len(positional) >= 2:
            owner = positional[0].split(":")[0]
            found += [(owner, path, recursive) for path in positional[1:]]
    return found


# ---------------------------------------------------------------------------------------------------
# The Dockerfile


@dataclass
class Image:
    base: str = ""
    user: str = "root"
    owners: dict[str, str] = field(default_factory=dict)  # path -> user, for what the build creates or chowns
    pip_installs: list[list[str]] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)


def read_dockerfile(path: Path) -> Image:
    image = Image()
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            image.base = rest.split()[0]
        elif instruction == "USER":
            image.user = rest.strip().split(":")[0]
        elif instruction in ("COPY", "ADD"):
            args = shlex.split(rest)
            owner = next((a.split("=", 1)[1].split(":")[0] for a in args if a.startswith("--chown=")), "root")
            paths = [a for a in args if not a.startswith("--")]
            image.copied += paths[:-1]
            image.owners[str(PurePosixPath(paths[-1]))] = owner
        elif instruction == "RUN":
            for segment in re.split(r"&&|\|\||;|\|", rest):
                _run(image, shlex.split(segment))
    return image


def _run(image: Image, w: list[str]) -> None:
    if not w:
        return
    if w[0] == "install" and ("-d" in w or "--directory" in w):
        owner, paths, skip = image.user, [], False
        for i, arg in enumerate(w[1:], 1):
            if skip:
                skip = False
            elif arg in ("-o", "--owner"):
                owner, skip = w[i + 1], True
            elif arg in ("-g", "--group", "-m", "--mode"):
                skip = True
            elif not arg.startswith("-"):
                paths.append(arg)
        image.owners.update(dict.fromkeys(paths, owner))
    elif w[0] == "mkdir":
        image.owners.update(dict.fromkeys((a for a in w[1:] if not a.startswith("-")), image.user))
    elif w[0] == "chown":
        for owner, path, recursive in chowns(w):
            for known in list(image.owners):
                if known == path or (recursive and under(known, path)):
                    image.owners[known] = owner
            image.owners[path] = owner
    elif "pip" in w[:3] and "install" in w:
        image.pip_installs.append(w[w.index("install") + 1 :])


@pytest.fixture(scope="module")
def image() -> Image:
    return read_dockerfile(DOCKERFILE)


def airflow_based(service: dict[str, Any], image: Image) -> bool:
    base = image.base if "build" in service else str(service.get("image", ""))
    return base.startswith("apache/airflow")


# ---------------------------------------------------------------------------------------------------
# The file parses


@pytest.mark.parametrize("tool", ["docker compose", "docker-compose"])
def test_compose_tools_accept_the_file(tool, env_file):
    command = TOOLS.get(tool)
    if command is None:
        pytest.skip(f"{tool} is not installed here (no Docker engine on this machine); the rules below still run")
    out = tool_config(command, env_file, "-q")
    assert out.returncode == 0, out.stderr


def test_services(services):
    assert set(services) == SERVICES
    for name in SCALED:
        assert "container_name" not in services[name], f"{name} must be scalable: no container_name"


# ---------------------------------------------------------------------------------------------------
# Blocker: commands that never run


def test_commands_run_on_the_airflow_entrypoint(services, image):
    """Without its own entrypoint, a service of an apache/airflow image runs `airflow <command>`."""
    for name, service in services.items():
        if not airflow_based(service, image):
            continue
        command = words(service.get("command"))
        if "entrypoint" in service:
            entry = words(service["entrypoint"])
            if not any(w.endswith("/entrypoint") for w in entry):
                continue  # its own entrypoint: the command runs as written
            command = entry[[w.endswith("/entrypoint") for w in entry].index(True) + 1 :] + command
        first = command[0] if command else ""
        if first == "airflow":
            first = command[1] if len(command) > 1 else ""
        assert first in PASSED_THROUGH | AIRFLOW_COMMANDS, (
            f"{name}: the apache/airflow entrypoint would run `airflow {' '.join(command)}` (invalid choice "
            f"{first!r}); give the service its own entrypoint, e.g. ['/usr/bin/dumb-init', '--']"
        )


def test_every_service_waits_for_what_it_needs(services):
    for name in ("app", "proxy", "mlflow", "airflow-scheduler", "airflow-worker"):
        conditions = depends_on(services[name])
        assert conditions and set(conditions.values()) <= {"service_healthy", "service_completed_successfully"}, name


# ---------------------------------------------------------------------------------------------------
# Blocker: volumes the services cannot write


def test_every_mounted_volume_is_writable_by_the_service_user(services, image):
    """A volume on a path the image lacks is created root-owned; non-root services cannot write it."""
    for name, service in services.items():
        user = user_of(service, image)
        if user is None or is_root(user):
            continue  # not our image (the official images' entrypoints chown their data as root), or root
        for mount in mounts(service):
            if mount.kind not in ("volume", "anonymous") or mount.read_only:
                continue
            by_image = same_user(image.owners.get(str(PurePosixPath(mount.target))), user)
            by_init = mount.kind == "volume" and chowned_by_an_init_service(services, image, name, mount, user)
            assert by_image or by_init, (
                f"{name}: {mount.target} ({mount.kind} volume {mount.source or ''}) would be root-owned and not "
                f"writable by {user}: create it in the Dockerfile owned by {user} (install -d -o {user} ...)"
                + ("" if mount.kind == "anonymous" else f", or chown it in a root service that {name} waits for")
            )


def chowned_by_an_init_service(
    services: dict[str, dict[str, Any]], image: Image, name: str, mount: Mount, user: str
) -> bool:
    for dep, condition in depends_on(services[name]).items():
        init = services[dep]
        if condition != "service_completed_successfully" or not is_root(user_of(init, image) or "root"):
            continue
        script = words(init.get("entrypoint")) + words(init.get("command"))
        for theirs in mounts(init):
            if theirs.kind != "volume" or theirs.source != mount.source:
                continue
            for owner, path, recursive in chowns(script):
                if same_user(owner, user) and (path == theirs.target or (recursive and under(theirs.target, path))):
                    return True
    return False


# ---------------------------------------------------------------------------------------------------
# Blockers: gaps against Airflow's official compose file


def test_restart_policies(services):
    one_shot = {dep for s in services.values() for dep, c in depends_on(s).items() if c.endswith("successfully")}
    for name, service in services.items():
        restart = str(service.get("restart", "no")).split(":")[0]
        if name in one_shot:
            assert restart in ONE_SHOT_RESTARTS, f"{name} runs once: restart {restart!r} would run it again forever"
        else:
            assert restart in LONG_RUNNING_RESTARTS, f"{name} has no restart policy"


def test_healthchecks_have_a_start_period(services):
    one_shot = {dep for s in services.values() for dep, c in depends_on(s).items() if c.endswith("successfully")}
    for name, service in services.items():
        if name in one_shot:
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert str(check.get("start_period", "0")) not in ("0", "0s", ""), f"{name}: healthcheck without start_period"


def test_celery_workers_shut_down_warm(services, image):
    """dumb-init's default (setsid) signals every process: the worker's tasks die instead of finishing."""
    workers = [n for n, s in services.items() if "celery" in words(s.get("command"))[:2] and airflow_based(s, image)]
    assert workers == ["airflow-worker"]
    for name in workers:
        assert environment(services[name]).get("DUMB_INIT_SETSID") == "0", f"{name}: set DUMB_INIT_SETSID: '0'"


def test_urls_inside_containers_name_services(services):
    """127.0.0.1 inside a container is that container: the retrain trigger would call nothing."""
    expected = {"AIRFLOW_URL": "airflow-apiserver", "APP_URL": "proxy", "MLFLOW_TRACKING_URI": "mlflow"}
    for name in SETTINGS_READERS:
        env = environment(services[name])
        for variable, target in expected.items():
            host = urlsplit(env.get(variable, "")).hostname
            assert host == target and host in services, f"{name}: {variable}={env.get(variable)!r}, not {target}"


def test_project_services_run_in_production(services):
    """.env.example says development, which accepts placeholder secrets; compose must say production."""
    for name in SETTINGS_READERS:
        assert environment(services[name]).get("ENVIRONMENT") == "production", name


def test_scaled_services_publish_no_fixed_host_port(services):
    for name in SCALED:
        assert not published(services[name]), f"{name}: --scale {name}=N would conflict on a fixed host port"


def test_replicas_keep_their_own_journals(services):
    """A named volume is shared by every replica; journals and outboxes must be one per replica."""
    for name, default in JOURNAL_WRITERS.items():
        service = services[name]
        outbox = environment(service).get("OUTBOX_DIR", default)
        holding = [m for m in mounts(service) if under(outbox, m.target)]
        innermost = max(holding, key=lambda m: len(PurePosixPath(m.target).parts), default=None)
        assert innermost is None or innermost.kind in ("anonymous", "tmpfs"), (
            f"{name}: OUTBOX_DIR {outbox} is on {innermost.kind} {innermost.source}, shared by every replica; "
            "use an anonymous volume (one per container) or the container's own storage"
        )
        if innermost is not None and innermost.kind == "anonymous":
            # compose keeps the anonymous volume when it recreates the container; the new process replays
            # the files only if they carry its hostname (app/prediction_log.py)
            assert service.get("hostname"), f"{name}: a fixed hostname, so a recreated replica replays its journals"


def test_app_replicas_sit_behind_a_proxy(services):
    proxy = services["proxy"]
    assert str(proxy["image"]).startswith("nginx:")
    assert published(proxy), "the proxy publishes the app's one host port"
    assert "app" in depends_on(proxy)
    conf = next(m for m in mounts(proxy) if m.kind == "bind" and m.target.startswith("/etc/nginx/conf.d/"))
    text = re.sub(r"#.*", "", (ROOT / "config" / "nginx" / "app.conf").read_text())  # directives only
    assert Path(conf.source or "").name == "app.conf"
    assert "resolver 127.0.0.11" in text, "nginx must re-resolve `app` (Docker's DNS) to see scaled replicas"
    assert re.search(r"http://app:5000\b", text), "nginx proxies to the app service's port"
    assert "--bind 0.0.0.0:5000" in " ".join(words(services["app"]["command"]))
    assert "non_idempotent" not in text, "a POST retried on another replica would log a prediction twice"


def test_mlflow_is_not_open(services):
    """Whoever can write to MLflow can register a model: basic auth, and published at most to this host."""
    mlflow = services["mlflow"]
    command = " ".join(words(mlflow.get("command")))
    assert "--app-name basic-auth" in command, "MLflow runs without auth"
    for address, _ in published(mlflow):
        assert address == "127.0.0.1", f"MLflow is published on {address}"
    env = environment(mlflow)
    ini = ROOT / PurePosixPath(env["MLFLOW_AUTH_CONFIG_PATH"]).relative_to(IMAGE_ROOT)
    assert ini.is_file(), f"{ini} is copied into the image at {env['MLFLOW_AUTH_CONFIG_PATH']}"
    database = re.search(r"^database_uri\s*=\s*sqlite:///(\S+)", ini.read_text(), re.M)
    assert database and any(under(database.group(1), m.target) for m in mounts(mlflow) if m.kind == "volume"), (
        "the auth database must live on a named volume, or the users are lost when the container is recreated"
    )
    for variable in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env.get(variable), f"mlflow: {variable}"
    for name in SETTINGS_READERS:
        client = environment(services[name])
        assert client.get("MLFLOW_TRACKING_USERNAME") == env["MLFLOW_AUTH_ADMIN_USERNAME"], name
        assert client.get("MLFLOW_TRACKING_PASSWORD") == env["MLFLOW_AUTH_ADMIN_PASSWORD"], name


def test_mlflow_allows_its_service_name_and_localhost(services):
    command = words(services["mlflow"]["command"])
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow", "mlflow:5001", "localhost", "127.0.0.1"} <= set(hosts)


def test_service_images_are_pinned_to_a_minor_version(services, image):
    for name, service in services.items():
        if "build" in service:
            continue
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+[\w.-]*", str(service["image"])), (
            f"{name}: {service['image']} is not pinned to a minor version"
        )
    assert re.fullmatch(r"apache/airflow:(slim-)?\d+\.\d+\.\d+-python3\.11", image.base), image.base


def test_mongo_keeps_auth(services):
    env = environment(services["mongo"])
    assert env.get("MONGO_INITDB_ROOT_USERNAME") and env.get("MONGO_INITDB_ROOT_PASSWORD")
    assert str(services["mongo"]["image"]).startswith("mongo:7.")
    for name in SETTINGS_READERS:
        assert "@mongo:27017/" in environment(services[name]).get("MONGO_URI", ""), name


def test_secrets_come_only_from_env():
    text = COMPOSE.read_text()
    secrets = (
        "MONGO_ROOT_PASSWORD", "POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY",
        "MLFLOW_TRACKING_PASSWORD_COMPOSE", "MLFLOW_FLASK_SERVER_SECRET_KEY",
    )  # fmt: skip
    for secret in secrets:
        assert f"${{{secret}:?" in text, f"{secret} must be required from .env"
        assert f"{secret}=" in ENV_EXAMPLE.read_text(), f".env.example lists {secret}"
    assert not re.search(r"(PASSWORD|SECRET|KEY):\s*[\"']?\w+[\"']?\s*$", text, re.M), "no literal secrets"


# ---------------------------------------------------------------------------------------------------
# Blocker: the image does not use the lock as it stands


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
        if m:
            found[normalise(m.group(1))] = m.group(2)
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(normalise(re.split(r"[\[<>=!~; ]", line)[0]))
    return names


def test_the_image_installs_the_production_lock_alone(image):
    assert image.pip_installs, "the Dockerfile installs the lock with pip"
    for args in image.pip_installs:
        files = [args[i + 1] for i, a in enumerate(args) if a in ("-r", "--requirement")]
        extra = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in ("-r",))]
        assert [PurePosixPath(f).name for f in files] == ["requirements.txt"], args
        assert not extra, f"the Dockerfile installs {extra} beside the lock: put them in requirements.in"
    assert not any("requirements-dev" in c for c in image.copied), "dev tools stay out of the image"


def test_the_production_lock_has_what_the_stack_runs():
    runtime = pins(ROOT / "requirements.txt")
    assert RUNTIME_PINS <= set(runtime), f"missing from requirements.txt: {RUNTIME_PINS - set(runtime)}"
    assert not DEV_ONLY & set(runtime), f"dev tools in the production lock: {DEV_ONLY & set(runtime)}"


def test_the_two_locks_agree():
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert DEV_ONLY <= set(dev)
    assert "-c requirements.txt" in (ROOT / "requirements-dev.in").read_text()
    differ = {name: (runtime[name], dev[name]) for name in set(runtime) & set(dev) if runtime[name] != dev[name]}
    assert not differ, f"requirements-dev.txt pins other versions than requirements.txt: {differ} (make lock)"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): requirements\.txt requirements-dev\.txt$", makefile, re.M)
    assert "-r requirements.txt -r requirements-dev.txt" in makefile


def test_every_imported_package_is_declared():
    """scipy and matplotlib were imported but came in only through other packages."""
    local = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    distributions = packages_distributions()
    wanted = declared(ROOT / "requirements.in")
    # a meta package (apache-airflow: core + task SDK) ships no module: it stands for what it requires
    shipping = {normalise(d) for names in distributions.values() for d in names}
    for name in wanted - shipping:
        wanted |= {normalise(re.split(r"[\[<>=!~; ]", r)[0]) for r in requires(name) or [] if "extra ==" not in r}
    undeclared: dict[str, list[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in local or top == "__future__":
                        continue
                    if not {normalise(d) for d in distributions.get(top, [])} & wanted:
                        undeclared.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not undeclared, f"imported but not in requirements.in (then `make lock`): {undeclared}"
