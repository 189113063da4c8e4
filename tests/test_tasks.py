"""The task layer: documented, thin, and configured in the documented order."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))
import tasks


def all_tasks():  # type: ignore[no-untyped-def]
    collection = tasks.ns
    for name in collection.task_names:
        yield name, collection[name]


@pytest.mark.parametrize("name", [n for n, _ in all_tasks()])
def test_every_task_has_a_docstring_and_help_for_every_option(name: str) -> None:
    task = tasks.ns[name]
    assert task.__doc__ and task.__doc__.strip(), f"{name} has no docstring"
    params = [p for p in inspect.signature(task.body).parameters if p != "c"]
    missing = [p for p in params if p not in task.help]
    assert not missing, f"{name}: no --help text for {missing}"


def test_inv_list_shows_the_namespace() -> None:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    for name in ("db.up", "db.down", "db.status", "db.url", "db.logs", "db.psql",
                 "migrate", "validate", "seed", "verify"):
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), name
    assert elapsed < 3, f"inv --list took {elapsed:.2f} s"


def test_every_inv_command_in_readme_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    used = set(re.findall(r"\binv ([a-z][a-z0-9_.-]*)", readme)) - {"--list"}
    assert used, "README names no inv commands"
    unknown = sorted(u for u in used if u not in tasks.ns.task_names)
    assert not unknown, f"README mentions unknown tasks: {unknown}"


def test_the_package_never_imports_invoke() -> None:
    offenders = []
    for path in (ROOT / "src" / "movelib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "invoke" or n.startswith("invoke.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_option_beats_config_beats_default(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.json"
    bad.write_text("[]]")
    default = cli("validate")
    assert default.code == 0 and "data/movements-canonical.json: 8 movements" in default.stdout
    configured = cli("validate", env={"INVOKE_PATHS_DATA_FILE": str(bad)})
    assert configured.code == 1 and "bad.json:1:3" in configured.stderr
    optioned = cli("validate", "--file", str(ROOT / "data" / "movements-canonical.json"),
                   env={"INVOKE_PATHS_DATA_FILE": str(bad)})
    assert optioned.code == 0, optioned.output


def test_profile_config_comes_from_the_environment(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("db.url", "--profile", "staging", env={"INVOKE_PROFILES_STAGING_PORT": "6001"})
    assert result.stdout.strip() == (
        "postgresql://athlete:***@127.0.0.1:6001/athlete_planning_staging"
    )


def test_dotenv_supplies_the_target_but_never_overrides_the_environment(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dotenv = tmp_path / ".env"
    dotenv.write_text("PLANNING_DATABASE_URL=postgresql://dot:pw@127.0.0.1:1/fromdotenv\n")
    env = {"INVOKE_PATHS_DOTENV": str(dotenv)}
    from_dotenv = cli("verify", env=env)
    assert "target: postgresql://dot:***@127.0.0.1:1/fromdotenv (from PLANNING_DATABASE_URL in .env)" in from_dotenv.stdout
    from_env = cli("verify", env={**env, "PLANNING_DATABASE_URL": "postgresql://env:pw@127.0.0.1:1/fromenv"})
    assert "fromenv (from PLANNING_DATABASE_URL)" in from_env.stdout
