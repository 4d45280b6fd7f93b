"""A training task that raises is retried, then failed with the reason in its log; nothing is promoted."""

from __future__ import annotations

from model.registry import CHAMPION, Registry
from tests.conftest import registry_config_for
from tests.dags.test_lifecycle_dags import MODEL, platform_env  # noqa: F401  (fixture)


def test_failing_training_is_retried_then_failed_and_promotes_nothing(dagbag, platform_env, servers, capfd):  # noqa: F811
    registry = Registry(registry_config_for(servers, MODEL))
    champion_before = registry.by_alias(CHAMPION)
    run = dagbag.get_dag("ml_pipeline").test(
        run_conf={"params": {"train": {"estimator": "logistic_regression", "hyperparameters": {"no_such_option": 1}}}}
    )
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    output = capfd.readouterr()
    assert run.state == "failed"
    assert str(tis["ingest"].state) == "success"
    assert str(tis["train"].state) == "failed"
    assert tis["train"].try_number == 1 + tis["train"].max_tries, "the task used its retries"
    assert str(tis["validate"].state) == "upstream_failed", "validation never ran, so nothing was promoted"
    assert "no_such_option" in output.out + output.err, "the reason is in the task log"
    champion_after = registry.by_alias(CHAMPION)
    assert (champion_before and champion_before.version) == (champion_after and champion_after.version)
    print(f"\ntrain task: {tis['train'].try_number} tries, failed; validate: {tis['validate'].state}")
