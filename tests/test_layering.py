"""The layering ARCHITECTURE.md states, checked on the source (imports read with ast, not by running)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config.settings import ROOT

# package -> top-level packages it must never import
FORBIDDEN = {
    "model": {"app", "plugins", "config", "ops", "dags", "airflow", "flask"},
    "app": {"plugins", "dags", "airflow"},
    "config": {"app", "plugins", "dags", "ops"},
    "plugins": {"app", "dags"},
}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downwards(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in _modules(package)
        if _imports(path) & FORBIDDEN[package]
    }
    assert not wrong, wrong


def test_model_never_reads_the_environment():
    """model/ is handed its configuration; only the settings (config/) read the environment."""
    readers = []
    for path in _modules("model"):
        for node in ast.walk(ast.parse(path.read_text())):
            call = isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.getenv", "os.environ.get")
            load = (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and ast.unparse(node.value) == "os.environ"
            )
            if call or load:
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # the one read: registry._session saves MLflow's variables to put them back after a call
    assert readers == [f"model/registry.py:{_line_of(ROOT / 'model' / 'registry.py', 'return {key: os.environ.get')}"]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_airflow_imports_none_of_our_helpers_as_bare_modules():
    """Airflow's plugin loader imports every .py it finds in plugins/ as a top-level module by its bare
    name (`tasks`, `hooks`, ...); plugins/.airflowignore leaves it nothing to import."""
    from airflow._shared.module_loading import find_path_from_directory

    found = [p for p in find_path_from_directory(str(ROOT / "plugins"), ".airflowignore", "glob") if p.endswith(".py")]
    assert found == []
    assert any(p.endswith(".py") for p in find_path_from_directory(str(ROOT / "plugins"), ".nothing", "glob"))


def test_vendored_files_are_the_ones_recorded():
    """app/static/vendor/README.md records each vendored file's digest: nothing edited in place."""
    import hashlib
    import re as regex

    vendor = ROOT / "app" / "static" / "vendor"
    recorded = regex.findall(r"`([\w/.-]+)` \(sha256 `([0-9a-f]{64})`\)", (vendor / "README.md").read_text())
    assert recorded
    for name, digest in recorded:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name


def test_only_the_task_kinds_branch_on_the_kind():
    """What differs between digits and tables is asked of model/kinds/; nothing else compares kind names
    or takes a missing schema to mean "images"."""
    import re as regex

    branch = regex.compile(
        r"""==\s*["'](image|tabular)["']|["'](image|tabular)["']\s*==|schema is (not )?None|\.task =="""
    )
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in ("model", "app", "plugins", "dags", "ops")
        for path in _modules(package)
        if "kinds" not in path.relative_to(ROOT).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if branch.search(line)
    ]
    assert not found, found


def test_the_codemap_names_every_module():
    """ARCHITECTURE.md's codemap stays true: every module of the packages is named in it."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    missing = [
        str(path.relative_to(ROOT))
        for package in ("model", "app", "plugins", "ops", "bench", "config")
        for path in _modules(package)
        if path.name != "__init__.py" and f"`{path.name}`" not in text and f"{path.name}`" not in text
    ]
    assert not missing, missing
