"""The command line a person types: help that always answers and touches nothing, no trap in
invoke's own flags, no misspelt flag swallowed (issue 33). Each command as typed, through `inv`
in process."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from support import CANONICAL, ROOT, Cli, ConnectionCounter, Server, make_key, namespace

from movelib.database.target import Target

NS = namespace()
TASKS = sorted(NS.task_names)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", TASKS)
def test_every_task_answers_its_help_after_its_name_and_touches_nothing(
        cli: Cli, listener: ConnectionCounter, name: str, flag: str) -> None:
    """`inv restore --help` took --help as the dump file; `inv release -h` as the version."""
    before = listener.count
    env = {"PLANNING_DATABASE_URL": f"postgresql://u:unused-pw@127.0.0.1:{listener.port}/db"}
    said = set()
    for argv in ([name, flag], [name, "x", flag], [flag, name]):
        result = cli(*argv, env=env)
        said.add(result.stdout)
        assert result.code == 0, (argv, result.output)
        assert result.stdout.startswith(f"Usage: inv {name} ") and "Options:" in result.stdout, result.output
        assert "exit codes, every task: 0 yes" in result.stdout
        assert result.stderr == "", result.output  # nothing else ran
    assert listener.count == before, "a task's help opened a connection"
    assert len(said) == 1, said  # the same help, with every option's text, however it was asked


def test_bare_help_lists_the_tasks_and_the_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0, result.output
    for name in TASKS:
        assert f"  {name} " in result.stdout, name
    assert "Exit codes, every task: 0 yes" in result.stdout
    for trap in ("--dry", "--echo", "--pty", "--warn-only", "sudo", "--hide", "--command-timeout"):
        assert trap not in result.stdout, trap


@pytest.mark.parametrize(("argv", "says"), [
    pytest.param(["--dry", "restore", "x.sql", "--yes"], "--dry is invoke's option for the shell commands",
                 id="dry-before"),
    pytest.param(["restore", "x.sql", "--yes", "--dry"], "a task's own --dry-run previews", id="dry-after"),
    pytest.param(["--echo", "seed"], "--echo is invoke's option", id="echo"),
    pytest.param(["--pty", "verify"], "--pty is invoke's option", id="pty"),
    pytest.param(["-f", "data.json", "validate"], "-f goes after the task it belongs to: `inv validate -f data.json`",
                 id="f-before-task"),
    pytest.param(["-f", "nope.yaml", "validate"], "`inv validate -f nope.yaml`", id="f-nope-before-task"),
    pytest.param(["-p", "staging", "verify"], "`inv verify -p staging`", id="p-before-task"),
    pytest.param(["-d", "postgresql://u:pw@h/db", "verify"], "`inv verify -d postgresql://u:***@h/db`",
                 id="d-before-task"),
    pytest.param(["-y", "restore", "x.sql"], "`inv restore -y`", id="y-before-task"),
    pytest.param(["-c", "tasks", "verify"], "-c is an option of db.psql: give it after the task", id="invoke-c"),
    pytest.param(["-x", "verify"], "No idea what '-x' is!", id="nobody-has-x"),
    pytest.param(["restore", "--yess", "x.sql"], "inv restore: no option --yess; did you mean --yes?", id="yess"),
    pytest.param(["cosign", "--kye", "KEY", "v1.1"], "inv cosign: no option --kye; did you mean --key?", id="kye"),
    pytest.param(["restore", "--dryrun"], "inv restore: no option --dryrun; did you mean --dry-run", id="dryrun"),
    pytest.param(["release", "v1.2", "--sigm", "k"], "inv release: no option --sigm; did you mean --sign?",
                 id="sigm"),
    pytest.param(["seed", "--dry-run", "--quite"], "inv seed: no option --quite; did you mean --quiet",
                 id="quite-after-a-flag"),
    pytest.param(["migrate", "seed", "--fil", "x.json"], "inv seed: no option --fil", id="second-task"),
])
def test_invoke_flags_and_misspelt_flags_are_refused_with_what_was_meant(
        cli: Cli, listener: ConnectionCounter, argv: list[str], says: str) -> None:
    before = listener.count
    env = {"PLANNING_DATABASE_URL": f"postgresql://u:unused-pw@127.0.0.1:{listener.port}/db"}
    result = cli(*argv, env=env)
    assert result.code == 2, result.output
    assert says in result.stderr, result.output
    assert "Traceback" not in result.output and "No idea what 'x.sql'" not in result.output
    assert listener.count == before


@pytest.mark.parametrize("argv", [
    ["seed", "--dry-run", "--debug", "--help"],  # invoke's long flags stay allowed after a task
    ["verify", "--json", "--help"],
    ["restore", "-y", "--dry-run", "-p", "staging", "--help"],
])
def test_what_invoke_allows_still_parses(cli: Cli, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 0 and "Options:" in result.stdout, result.output


# -- the exit-code contract: 2 when the question could not be asked ------------------------------


def test_what_is_not_there_or_not_a_release_is_exit_2(cli: Cli, tmp_path: Path) -> None:
    nokey = str(tmp_path / "nokey")
    for argv, says in [
        (["verify", "--release", str(tmp_path / "nope.manifest.json")], "no such manifest file"),
        (["verify", "--release", "v9.9"], "release v9.9: no manifest in"),
        (["release", "v1.2", "--sign", nokey], "does not exist"),
        (["release", "foo"], "version foo is not like v1.0"),
        (["cosign", "v1.1", nokey], "does not exist"),  # the key is checked first
        (["cosign", "v1.1", str(Path(__file__))], "release v1.1: no manifest in"),
        (["data.import", "free-exercise-db", str(tmp_path / "nonexistent.json"), str(tmp_path / "o.json")],
         "no such file"),
        (["data.import", "free-exercise-db", str(tmp_path), str(tmp_path / "o.json")], "is a directory"),
    ]:
        result = cli(*argv)
        assert result.code == 2, (argv, result.output)
        assert says in result.stderr, (argv, result.output)


@pytest.mark.posix  # symlinks, FIFOs, /dev/zero
@pytest.mark.parametrize("kind", ["symlink-loop", "fifo", "device", "directory"])
def test_a_data_file_that_cannot_be_read_is_exit_2(cli: Cli, tmp_path: Path, kind: str) -> None:
    if sys.platform == "win32":  # the posix marker already skips it there; this tells mypy
        pytest.skip("POSIX only")
    path = tmp_path / "data.json"
    if kind == "symlink-loop":
        path.symlink_to(path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.mkdir()
    for task in ("validate", "seed", "verify"):
        result = cli(task, "--file", str(path), "--dsn", "postgresql://u@127.0.0.1:1/x")
        assert result.code == 2, (task, result.output)
        assert "Traceback" not in result.output


@pytest.mark.parametrize("depth", [979, 980, 981, 982])
def test_a_field_nested_near_the_recursion_limit_is_a_message(cli: Cli, tmp_path: Path, depth: int) -> None:
    record = json.loads(CANONICAL.read_text())[0]
    path = tmp_path / "deep.json"  # written as text: json.dumps itself would recurse that deep
    path.write_text(json.dumps([record]).replace(json.dumps(record["name"]),
                                                 "[" * depth + '"Back Squat"' + "]" * depth, 1))
    for argv in (["validate"], ["seed", "--dry-run", "--dsn", "postgresql://u@127.0.0.1:1/x"],
                 ["verify", "--dsn", "postgresql://u@127.0.0.1:1/x"]):
        result = cli(*argv, "--file", str(path))
        assert result.code == 1, (argv, result.output)
        assert "nested" in result.stderr and "Traceback" not in result.output, (argv, result.output)


def test_data_import_names_fields_of_another_shape_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "exercises.json"
    source.write_text(json.dumps([
        {"name": "Squat", "category": "strength", "equipment": ["barbell", "rack"], "level": "beginner",
         "instructions": ["Stand.", "Squat."], "primaryMuscles": ["quadriceps"]},
        {"name": "Plank", "category": "strength", "equipment": "body only", "level": "beginner",
         "instructions": "Stay straight.", "primaryMuscles": ["abdominals"]},
    ]))
    out = tmp_path / "out.json"
    result = cli("data.import", "free-exercise-db", str(source), str(out))
    assert result.code == 1, result.output
    assert "#0 Squat: equipment is list, not a string" in result.stderr, result.output
    assert "#1 Plank: instructions is str, not a list of strings" in result.stderr
    assert "Traceback" not in result.output and not out.exists()


def test_a_server_that_cannot_hold_a_name_is_exit_2_from_seed_and_restore(
        cli: Cli, pg18: Server, migrated_db: Target, tmp_path: Path) -> None:
    """The same server error (a LATIN1 database, a name it has no character for) was 2 from seed
    and 1 from restore."""
    records = json.loads(CANONICAL.read_text())
    records[0]["name"] = "Kniebeuge 深蹲"
    data = tmp_path / "wide.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    assert cli("seed", "--dsn", migrated_db.conninfo, "--file", str(data)).code == 0
    assert cli("dump", "--dsn", migrated_db.conninfo, "--output-dir", str(tmp_path)).code == 0
    with latin1_database(pg18) as latin1:
        seeded = cli("seed", "--dsn", latin1, "--file", str(data))
        restored = cli("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"), "--dsn", latin1,
                       "--yes")
        assert (seeded.code, restored.code) == (2, 2), seeded.output + restored.output
        assert "LATIN1" in restored.stderr, restored.output


@contextmanager
def latin1_database(server: Server) -> Iterator[str]:
    """A LATIN1 database (its DSN), dropped afterwards."""
    name = f"t_latin1_{uuid.uuid4().hex[:10]}"
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'").format(
            sql.Identifier(name)))
    try:
        yield server.dsn(name)
    finally:
        server.drop_database(name)


# -- advice that names the target it is about ------------------------------------------------------


def test_advice_names_the_target_and_what_the_task_takes(cli: Cli, ssh_keygen: None, migrated_db: Target,
                                                         tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    records = json.loads(CANONICAL.read_text())
    records[0]["name"] += " (edited)"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(records))
    refused = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(edited))
    assert refused.code == 1, refused.output
    assert f"`inv seed --file {edited} --dsn <the DSN> --new-versions` publishes" in refused.stderr
    dry = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(edited), "--dry-run")
    assert f"`inv seed --file {edited} --dsn <the DSN> --new-versions` publishes" in dry.stderr, dry.output
    # a protected write names --yes only where the task takes it
    assert cli("migrate", "--dsn", migrated_db.conninfo, "--environment", "production").code == 0
    pinned = cli("trust.pin", f"{make_key(tmp_path, 'k')}.pub", "--principal", "a@example.com", "--dsn", migrated_db.conninfo)
    assert "refusing to pin a signer" in pinned.stderr and "--yes" not in pinned.stderr, pinned.output
    restored = cli("restore", "--dump-file", str(tmp_path / "none.sql"), "--dsn", migrated_db.conninfo)
    assert restored.code == 2  # (no such dump: refused before the target is asked)


def test_a_failed_seed_says_that_what_it_printed_as_done_was_rolled_back(
        cli: Cli, pg18: Server, tmp_path: Path) -> None:
    """Migrations and a label are in the seed's one transaction: a seed that fails after them
    (a LATIN1 database, a name it has no character for) printed them, and must take them back."""
    records = json.loads(CANONICAL.read_text())
    records[0]["name"] = "Kniebeuge 深蹲"
    data = tmp_path / "wide.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    with latin1_database(pg18) as dsn:
        result = cli("seed", "--dsn", dsn, "--environment", "staging", "--file", str(data))
        assert result.code == 2, result.output
        assert "migrations: applied" in result.stdout and "environment: labelled staging" in result.stdout
        assert ("(the migrations and environment said above were rolled back with the seed: its one "
                "transaction commits all or nothing)") in result.stderr, result.output
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT to_regclass('movement_environment')").fetchone() == (None,)


def test_the_markdown_plan_is_as_the_readme_shows_it(cli: Cli, migrated_db: Target) -> None:
    plan = cli("seed", "--dry-run", "--format", "markdown", "--dsn", migrated_db.conninfo)
    target = next(line for line in plan.stdout.splitlines() if line.startswith("Target: "))
    assert ":\\*\\*\\*@" in target and ":***@" not in target, target


DOCS = ["README.md", "SECURITY.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md"))),
        *(f".github/workflows/{p.name}" for p in sorted((ROOT / ".github" / "workflows").glob("*.yml")))]
# the flag spellings of positional arguments: the docs give them by position, as `inv TASK --help` shows
FLAG_SPELLINGS = re.compile(r"inv (restore [^`\n]*--dump-file|release [^`\n]*--version|cosign [^`\n]*--(version|key)"
                            r"|promote [^`\n]*--version|trust\.pin [^`\n]*--keyfile|trust\.unpin [^`\n]*--fingerprint"
                            r"|trust\.threshold [^`\n]*--number)")


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_spell_each_command_one_way(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = [m.group(0) for m in FLAG_SPELLINGS.finditer(text)]
    assert not found, found


@pytest.mark.parametrize("name", ["restore", "release", "cosign", "promote", "trust.pin", "trust.unpin",
                                  "trust.threshold"])
def test_the_help_names_positional_arguments_as_the_docs_do(cli: Cli, name: str) -> None:
    usage = cli(name, "--help").stdout.splitlines()[0]
    words = [arg.name.upper().replace("-", "_") for arg in NS[name].get_arguments() if arg.positional]
    assert usage == f"Usage: inv {' '.join([name, *words])} [--options]", usage
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"#### `inv {name} " in readme


# -- every command the docs show parses as `inv` reads it -------------------------------------------

# inline examples of what `inv` refuses, shown on purpose
REFUSED_ON_PURPOSE = {"inv --lisst", "inv restore --yess x.sql", "inv --dry restore", "inv -f"}


def _shown_commands(text: str) -> tuple[list[str], list[str]]:
    """(the command lines of code blocks and workflow steps, the inline `inv ...` spans)."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        lines += [line.strip().removeprefix("$ ") for line in block.splitlines()]
    lines += [line.strip().removeprefix("run: ") for line in text.splitlines()]
    full = [line.split("  #")[0].split(" # ")[0].rstrip("\\").strip() for line in lines
            if line.startswith("inv ")]
    return full, [" ".join(span.split()) for span in re.findall(r"`(inv [^`]+)`", text)]


def _parse(words: list[str]) -> None:
    """``inv WORDS`` parsed as the program parses it (its own flags, then the tasks'), up to the
    first shell operator; nothing runs."""
    from invoke.parser import Parser
    from invoke.parser.context import ParserContext

    from movelib_cli.program import MovelibProgram, _read_tasks

    words = words[:next((i for i, w in enumerate(words) if w in (">", "|", "||", "&&", ";")), len(words))]
    program = MovelibProgram()
    initial = ParserContext(args=program.core_args() + program.task_args())
    rest = Parser(initial=initial, ignore_unknown=True).parse_argv(words).unparsed
    parser = Parser(initial=initial, contexts=namespace().to_contexts())
    _read_tasks(parser.contexts, initial, rest)
    parser.parse_argv(rest)


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_the_docs_show_parses_as_inv_reads_it(doc: str) -> None:
    """A command in a code block or a workflow step parses whole (its task, every flag, its
    positional values: placeholders such as KEY or <UTC> stand for values); an inline mention
    names only flags its task has."""
    from invoke.exceptions import ParseError

    full, inline = _shown_commands((ROOT / doc).read_text(encoding="utf-8"))
    wrong = []
    for command in full:
        try:
            _parse(shlex.split(command.replace("...", "X"))[1:])
        except (ParseError, ValueError) as exc:
            wrong.append(f"{command}: {exc}")
    for span in inline:
        if span in REFUSED_ON_PURPOSE or "[" in span:
            continue
        try:
            _parse(shlex.split(span.replace("...", "X"))[1:])
        except ParseError as exc:
            if "did not receive required positional" not in str(exc) and "needed value" not in str(exc) \
                    and "No idea what 'TASK'" not in str(exc) and "No idea what 'X'" not in str(exc):
                wrong.append(f"{span}: {exc}")
    assert not wrong, wrong
