"""The registry adapter against real MLflow servers: plain, and basic-auth (standing in for DagsHub)."""

from __future__ import annotations

import pytest

from config.settings import Settings, registry_config
from model import lifecycle
from model.errors import NothingToRollBack, RegistryError
from model.params import TrainParams
from model.registry import CHAMPION, PREVIOUS, Registry, RegistryConfig, connect
from ops import services
from tests.conftest import registry_config_for


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-auth")
    ini = root / "auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "admin_username = admin\n"
        "admin_password = s3cret-pass-0123\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    server = services.mlflow(
        services.free_port(),
        root,
        root / "mlflow.log",
        app_name="basic-auth",
        env={"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key"},
    )
    proc = services.start(server)
    services.wait_healthy(server, proc)
    yield server
    services.stop_group(proc.pid)


def test_probe_authenticates_with_basic_auth(auth_server):
    config = RegistryConfig(auth_server.url, "auth-model", "auth-exp", username="admin", password="s3cret-pass-0123")
    registry = connect(config)
    assert registry.probe().logged_models is True, "MLflow 3 with basic auth has the logged-models API"
    assert registry.by_alias(CHAMPION) is None


def test_two_registries_in_one_process_keep_their_own_credentials(auth_server, servers):
    """Nothing of a registry's settings is left in the process: each call sets MLflow's, and puts them back.
    (They were once set by the constructor, so the last registry built decided every registry's login.)"""
    import os

    authed = connect(RegistryConfig(auth_server.url, "auth-model", "auth-exp", username="admin",
                                    password="s3cret-pass-0123"))  # fmt: skip
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    plain = connect(registry_config_for(servers, "plain-model"))
    assert authed.by_alias(CHAMPION) is None, "still its own login after another registry was built"
    assert plain.by_alias(CHAMPION) is None
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    stranger = Registry(RegistryConfig(auth_server.url, "auth-model", "auth-exp"))  # no credentials of its own
    with pytest.raises(Exception, match="401|Unauthorized|credentials"):
        stranger.by_alias(CHAMPION)


def test_wrong_password_is_reported_clearly(auth_server):
    config = RegistryConfig(auth_server.url, "auth-model", "auth-exp", username="admin", password="wrong")
    with pytest.raises(RegistryError, match="refused our credentials.*MLFLOW_TRACKING_PASSWORD"):
        connect(config)


def test_unreachable_server_is_reported_clearly():
    config = RegistryConfig(f"http://127.0.0.1:{services.free_port()}", "m", "e", http_timeout=1)
    with pytest.raises(RegistryError, match="unreachable"):
        connect(config)


def test_dagshub_settings_become_basic_auth_on_its_mlflow():
    settings = Settings(
        _env_file=None,
        dagshub_repo_owner="acme-org",
        dagshub_repo_name="digits",
        dagshub_username="alice",
        dagshub_user_token="tok-123",
        mlflow_tracking_username=None,
    )
    config = registry_config(settings)
    assert config.tracking_uri == "https://dagshub.com/acme-org/digits.mlflow"
    assert (config.username, config.password) == ("alice", "tok-123"), "the token's owner, not the repo owner"
    assert config.credentials_hint == "DAGSHUB_USERNAME / DAGSHUB_USER_TOKEN"


def test_dagshub_variables_as_the_dagshub_client_names_them(monkeypatch):
    for key, value in {
        "DAGSHUB_REPO_OWNER": "acme-org",
        "DAGSHUB_REPO_NAME": "digits",
        "DAGSHUB_USERNAME": "alice",
        "DAGSHUB_TOKEN": "old-name-token",  # the name this project read before; still accepted
        "DAGSHUB_CLIENT_HOST": "https://dagshub.example.org/",
        "MLFLOW_REGISTRY_URI": "http://registry.example.org:5001",
    }.items():
        monkeypatch.setenv(key, value)
    config = registry_config(Settings(_env_file=None))
    assert config.tracking_uri == "https://dagshub.example.org/acme-org/digits.mlflow", "self-hosted DagsHub"
    assert config.password == "old-name-token"
    assert config.registry == "http://registry.example.org:5001"
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "new-name-token")
    assert registry_config(Settings(_env_file=None)).password == "new-name-token"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dagshub_repo_owner": "a", "dagshub_repo_name": "b", "dagshub_user_token": "t"}, "DAGSHUB_USERNAME is not"),
        ({"dagshub_user_token": "t"}, "DAGSHUB_REPO_OWNER and DAGSHUB_REPO_NAME are not"),
        ({"dagshub_repo_owner": "a"}, "set both DAGSHUB_REPO_OWNER and DAGSHUB_REPO_NAME"),
    ],
)
def test_incomplete_dagshub_settings_say_what_to_set(values, message):
    with pytest.raises(ValueError, match=message):
        Settings(_env_file=None, **values)


def test_production_refuses_placeholder_secrets():
    with pytest.raises(ValueError, match="ADMIN_TOKEN"):
        Settings(_env_file=None, environment="production", admin_token="change-me", airflow_admin_password="x" * 20)
    # the rest of what production needs is checked in tests/app/test_security.py


def test_rollback_moves_champion_back_and_is_recorded(servers, db, tmp_path, champion):
    registry = Registry(registry_config_for(servers, "digits-rollback"))
    # a small network trains in seconds and still clears the gate: rollback is under test, not the model
    quick = TrainParams(estimator="mlp", hyperparameters={"hidden_layer_sizes": [32], "max_iter": 60})
    params = champion["params"].model_copy(update={"train": quick})
    path = champion["snapshot_path"]

    with pytest.raises(NothingToRollBack):
        lifecycle.rollback(registry, db)
    first = lifecycle.train_and_register(params, path, registry, db)
    lifecycle.validate_and_promote(params, path, first["version"], registry, db, tmp_path)
    second = lifecycle.train_and_register(params, path, registry, db)
    decision = lifecycle.validate_and_promote(params, path, second["version"], registry, db, tmp_path)
    assert decision["outcome"] == "promoted", "same data, same seed: equal accuracy is within the tolerance"
    assert registry.by_alias(PREVIOUS).version == first["version"]

    result = lifecycle.rollback(registry, db)
    assert result == {"champion": first["version"], "previous": second["version"], "reason": result["reason"]}
    assert registry.by_alias(CHAMPION).version == first["version"]
    assert registry.by_alias(PREVIOUS).version == second["version"]
    assert db.model_events.find_one({"kind": "rollback"})["version"] == first["version"]


def test_probing_while_another_thread_uses_a_registry_never_trips_on_the_environment(servers, monkeypatch):
    """The app's poller changes MLflow's environment variables around each call while other threads
    probe (and requests iterates os.environ for proxies): a key removed mid-iteration was a KeyError."""
    import os
    import sys
    import threading
    import time

    from model import registry as registry_module

    config = registry_config_for(servers, "env-race")
    other = Registry(RegistryConfig(tracking_uri="http://127.0.0.1:9", model_name="elsewhere", experiment_name="x"))
    touch = registry_module._session(lambda self: None)
    stop = threading.Event()

    def poller() -> None:
        while not stop.is_set():
            touch(other)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as on a busy server: the race shows in a second
    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    try:
        for _ in range(40):
            connect(config)
        # a variable this thread sets meanwhile stays set (MLflow's set_tracking_uri deleted it on the way back)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:7")
        time.sleep(0.2)
        assert os.environ.get("MLFLOW_TRACKING_URI") == "http://127.0.0.1:7"
    finally:
        stop.set()
        thread.join(timeout=5)
        sys.setswitchinterval(interval)
