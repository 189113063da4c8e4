"""A restore executes nothing it did not write: forged dumps are refused before any connection.

Every forgery below keeps the dump and its manifest consistent (the sha256 and size are
recomputed), so only the format checks can catch it: the schema part must be what movelib
renders from its own migrations, byte for byte; the rest COPY rows of known tables with known
columns; the manifest must pass schemas/manifest.schema.json. Each is refused with exit 1, one
line naming the place, no traceback, and the target (an older library plus a bystander table)
is left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support import (
    CANONICAL,
    ROOT,
    Cli,
    Server,
    database,
    library_state,
    restore_connected,
    seed,
    settings,
    table_hashes,
)

from movelib.base.errors import ArtifactError, ConfirmationRequired
from movelib.database.migrations import migrate
from movelib.database.psql import child_env, tool_path
from movelib.database.target import Target, target_from_dsn
from movelib.ship.dump import dump
from movelib.ship.dumpformat import columns_for, dumped_tables
from movelib.ship.manifest import check_artifact, file_sha256, manifest_path
from movelib.ship.restore import check_dump_file, run_restore
from movelib.ship.restore_plan import RestoreOptions

MIGRATIONS = ROOT / "migrations"
# where a forged `\!` would leave its mark
MARKER = Path(tempfile.gettempdir()) / f"movelib-forged-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Source:
    dump: Path
    hashes: dict[str, str]
    library: list[tuple[Any, ...]]  # library_state


@pytest.fixture(scope="module")
def source(pg18: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """One honest dump of the canonical library, copied by each test before it forges it."""
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(target)
        result = dump(target, MIGRATIONS, tmp_path_factory.mktemp("source"), update_latest=False)
        yield Source(result.path, table_hashes(target), library_state(target))


@pytest.fixture(scope="module")
def older(pg18: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A template database: the first five movements, and a table that is not movelib's."""
    data = tmp_path_factory.mktemp("older") / "older.json"
    data.write_text(json.dumps(json.loads(CANONICAL.read_text())[:5]))
    with database(pg18, "movelib_template") as name:
        seed(target_from_dsn(pg18.dsn(name), "--dsn"), data)
        with psycopg.connect(pg18.dsn(name), autocommit=True) as conn:
            conn.execute("CREATE TABLE bystander (id integer PRIMARY KEY, note text)")
            conn.execute("INSERT INTO bystander VALUES (1, 'not movelib''s')")
        yield name


@pytest.fixture
def target(pg18: Server, older: str) -> Iterator[Target]:
    with database(pg18, older) as name:
        yield target_from_dsn(pg18.dsn(name), "--dsn")


@pytest.fixture
def copy(source: Source, tmp_path: Path) -> Path:
    """The honest dump and its manifest, in this test's folder."""
    path = tmp_path / source.dump.name
    shutil.copyfile(source.dump, path)
    shutil.copyfile(manifest_path(source.dump), manifest_path(path))
    return path


def bystander(target: Target) -> list[tuple[Any, ...]]:
    with psycopg.connect(target.conninfo) as conn:
        return conn.execute("SELECT * FROM bystander").fetchall()


def edit_manifest(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    mpath = manifest_path(path)
    manifest = json.loads(mpath.read_text())
    change(manifest)
    mpath.write_text(json.dumps(manifest, indent=2))


def recompute(path: Path) -> None:
    """Make the manifest agree with the forged file, as a forger would."""
    def sums(manifest: dict[str, Any]) -> None:
        manifest["size"], manifest["sha256"] = file_sha256(path)

    edit_manifest(path, sums)


def line_of(data: bytes, needle: bytes, last: bool = False) -> int:
    at = data.rindex(needle) if last else data.index(needle)
    return data.count(b"\n", 0, at) + 1


def insert_before(anchor: bytes, text: bytes) -> Callable[[bytes], bytes]:
    return lambda data: data.replace(anchor, text + anchor, 1)


def replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        assert old in data, old
        return data.replace(old, new, 1)

    return edit


def block(data: bytes, table: str) -> bytes:
    """A table's whole COPY block, from its blank line to its end-of-data line."""
    start = data.index(f'\nCOPY "{table}" '.encode())
    return data[start:data.index(b"\n\\.\n", start) + 4]


def twice(table: str) -> Callable[[bytes], bytes]:
    return lambda data: data.replace(block(data, table), block(data, table) * 2, 1)


def yoyo_row(data: bytes, migration: str) -> bytes:
    rows = block(data, "_yoyo_migration")
    return next(r for r in rows.split(b"\n") if f"\t{migration}\t".encode() in r)


def yoyo_renamed(data: bytes) -> bytes:
    row = yoyo_row(data, "0002.movement-versions")
    evil = hashlib.sha256(b"0003.backdoor").hexdigest().encode()
    return data.replace(row, evil + b"\t0003.backdoor\t" + row.split(b"\t")[2], 1)


def yoyo_rehashed(data: bytes) -> bytes:
    row = yoyo_row(data, "0001.movement-library")
    return data.replace(row, b"0" * 64 + row[64:], 1)


ROW = b"\tback-squat\t1\tBack Squat\t"  # the start of back-squat's movement_library row


def field_moved_to_the_next_row(data: bytes) -> bytes:
    """back-squat's library row one field longer, the next row one shorter: as many tabs in all
    as the rows should hold, each row wrong."""
    start = data.index(ROW)
    end = data.index(b"\n", start)
    last_tab = data.rindex(b"\t", end + 1, data.index(b"\n", end + 1))
    data = data[:last_tab] + data[last_tab + 1:]
    return data[:start + len(ROW)] + b"EXTRA\t" + data[start + len(ROW):]
SETVAL = b"SELECT setval("

# (id, forgery, the text that starts the refused line, what the message says)
FORGERIES: list[Any] = [
    pytest.param(lambda d: d + b"DROP TABLE bystander;\n", b"DROP TABLE bystander;",
                 "there is more after the end of the dump: 'DROP TABLE bystander;'",
                 id="drop-table-appended-after-the-footer"),
    pytest.param(insert_before(b"CREATE INDEX movement_audit_log_movement_idx", b"DROP TABLE bystander;\n"),
                 b"DROP TABLE bystander;",
                 "the dump has 'DROP TABLE bystander;' where movelib writes 'CREATE INDEX movement_audit_log_movement_idx",
                 id="statement-inserted-in-the-schema-part"),
    pytest.param(insert_before(b"SET client_encoding", f"\\! touch {MARKER}\n".encode()), b"\\! touch",
                 "the dump has '\\\\! touch", id="shell-meta-command"),
    pytest.param(insert_before(b"-- migration 0002.movement-versions", b"\\i /tmp/more.sql\n"), b"\\i /tmp",
                 "the dump has '\\\\i /tmp/more.sql' where movelib writes '-- migration 0002.movement-versions'",
                 id="include-meta-command"),
    pytest.param(insert_before(b"\n" + SETVAL, b'\nCOPY "bystander" ("id", "note") FROM stdin;\n2\tforged\n\\.\n'),
                 b'COPY "bystander"', "the dump has 'COPY \"bystander\" (\"id\", \"note\") FROM stdin;' where movelib writes \"SELECT setval(",
                 id="copy-into-another-table"),
    pytest.param(replace(b'"library_id", "since") FROM stdin;', b'"library_id") FROM stdin;'),
                 b'COPY "movement_current"', "where movelib writes 'COPY \"movement_current\" (\"slug\", \"version\", \"library_id\", \"s...'",
                 id="copy-with-another-column-list"),
    pytest.param(twice("movement_staging"), b'COPY "movement_staging"',
                 "the dump has 'COPY \"movement_staging\"", id="a-table-copied-twice"),
    pytest.param(insert_before(b"\n" + SETVAL, b"zz-forged\t1\t1\t2026-01-01 00:00:00+00\n"), b"zz-forged",
                 "the dump has 'zz-forged\\t1\\t1\\t2026-01-01 00:00:00+00' where movelib writes a blank line",
                 id="data-after-the-last-block"),
    pytest.param(lambda d: d + b"1\tforged\n", b"1\tforged", "there is more after the end of the dump",
                 id="data-after-the-footer"),
    pytest.param(insert_before(b'\nCOPY "movement_audit_log"', b"DROP TABLE bystander;\n"),
                 b"DROP TABLE bystander;", "the dump has 'DROP TABLE bystander;' where movelib writes a blank line",
                 id="statement-between-two-copy-blocks"),
    pytest.param(replace(b"-- end of movelib seed dump\n", b""), None,
                 "the dump ends here, where movelib writes '-- end of movelib seed dump'", id="footer-missing"),
    pytest.param(replace(b"    RAISE EXCEPTION 'Published movements cannot be edited'", b"    RETURN NULL; --"),
                 b"    RETURN NULL; --", "where movelib writes \"    RAISE EXCEPTION 'Published movements cannot",
                 id="function-body-changed"),
    pytest.param(replace(b"    BEFORE UPDATE OR DELETE ON movement_library\n", b"    BEFORE UPDATE ON movement_library\n"),
                 b"    BEFORE UPDATE ON movement_library", "where movelib writes '    BEFORE UPDATE OR DELETE ON movement_library'",
                 id="trigger-changed"),
    pytest.param(replace(ROW, ROW + b"EXTRA\t"), ROW,
                 "a row of movement_library has 21 field(s) where movement_library has 20 columns",
                 id="extra-column-in-a-copy-row"),
    pytest.param(field_moved_to_the_next_row, ROW,
                 "a row of movement_library has 21 field(s) where movement_library has 20 columns",
                 id="a-field-moved-from-one-row-to-the-next"),
    pytest.param(replace(ROW, ROW.replace(b"Back Squat", b"Back\rSquat")), ROW.replace(b"Back Squat", b"Back\rSquat"),
                 "a row of movement_library holds a raw carriage return", id="raw-carriage-return-in-a-row"),
    pytest.param(insert_before(b'\\.\n\nCOPY "movement_library"', b"\\.x" + b"\t" * 7 + b"\n"), b"\\.x",
                 "a row of movement_audit_log starts with \\. but is not the end-of-data line",
                 id="row-that-mimics-the-end-of-data-line"),
    pytest.param(yoyo_renamed, b"\t0003.backdoor\t",
                 "_yoyo_migration names migration '0003.backdoor', which the manifest does not list",
                 id="yoyo-bookkeeping-names-an-unknown-migration"),
    pytest.param(yoyo_rehashed, b"0" * 64,
                 "_yoyo_migration records 0001.movement-library with hash", id="yoyo-bookkeeping-with-a-forged-hash"),
]


def refused(cli: Cli, path: Path, target: Target, says: str) -> str:
    """Restore ``path`` with `inv restore --yes`: refused before any connection, the target as
    it was. The message."""
    before, kept = table_hashes(target), bystander(target)
    result = cli("restore", "--dump-file", str(path), "--dsn", target.conninfo, "--yes")
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout.startswith("target: "), result.stdout  # said first, as every task does
    assert not restore_connected(result.stdout), "the target was reached before the refusal"
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert says in message, message
    assert table_hashes(target) == before and bystander(target) == kept
    return message


@pytest.mark.parametrize(("forge", "starts", "says"), FORGERIES)
def test_a_forged_dump_is_refused_before_any_connection(cli: Cli, copy: Path, target: Target, forge: Callable[[bytes], bytes], starts: bytes | None, says: str) -> None:
    data = forge(copy.read_bytes())
    copy.write_bytes(data)
    recompute(copy)
    check_artifact(copy)  # the sha256 alone would let it through
    # the refused line: where `starts` is (a table's second COPY line), else just past the end
    line = line_of(data, starts, last=starts.startswith(b"COPY")) if starts else data.count(b"\n") + 1
    message = refused(cli, copy, target, says)
    assert f"{copy}: line {line}: " in message
    with pytest.raises(ArtifactError, match=f"line {line}: "):
        check_dump_file(copy)
    assert not MARKER.exists(), "a meta-command of the dump ran"


@pytest.mark.parametrize(("table", "version", "shown"), [
    ("movement_library", b"x1", "'x1'"), ("movement_library", b" 1", "' 1'"), ("movement_library", b"01", "'01'"),
    ("movement_library", b"\\N", "NULL"), ("movement_current", b"1_0", "'1_0'"), ("movement_current", b"+1", "'+1'")])
def test_a_version_that_is_not_a_number_is_refused_before_any_connection(
        cli: Cli, copy: Path, target: Target, table: str, version: bytes, shown: str) -> None:
    """A version movelib never writes, which Python's int() would take (" 1", "+1", "1_0",
    "01") or not ("x1", NULL), is refused by the check with its line, never a traceback."""
    data = copy.read_bytes()
    start = data.index(b"\n", data.index(f'\nCOPY "{table}" '.encode()) + 1) + 1
    end = data.index(b"\n", start)
    fields = data[start:end].split(b"\t")
    at = 2 if table == "movement_library" else 1  # (id, slug, version, ...), (slug, version, ...)
    fields[at] = version
    copy.write_bytes(data[:start] + b"\t".join(fields) + data[end:])
    recompute(copy)
    message = refused(cli, copy, target, f"a row of {table} (slug '{fields[at - 1].decode()}') has the version "
                                         f"{shown}, where movelib writes a whole number from 1 up; refusing the dump")
    line = line_of(data, data[start:end])
    assert f"{copy}: line {line}: a row of {table}" in message, message


MANIFEST_FORGERIES: list[Any] = [
    pytest.param(lambda m: m["migrations"].append("0003.from-the-future"),
                 "the dump needs migration(s) 0003.from-the-future, which this movelib does not have (it was written by movelib 0.1.0): upgrade movelib",
                 id="a-migration-this-checkout-lacks"),
    pytest.param(lambda m: m["row_counts"].update(bystander=1), "row_counts: 'bystander' is not one of",
                 id="an-unknown-table-in-row-counts"),
    pytest.param(lambda m: m["row_counts"].update({"public.movement_library": m["row_counts"].pop("movement_library")}),
                 "row_counts: 'public.movement_library' is not one of", id="a-schema-qualified-table"),
    pytest.param(lambda m: m["row_counts"].pop("movement_current"),
                 "row_counts names _yoyo_log, _yoyo_migration, _yoyo_version, movement_audit_log, movement_library, movement_seed_run, movement_staging, but a dump of migrations",
                 id="a-dumped-table-missing-from-row-counts"),
    pytest.param(lambda m: m.update(size=str(m["size"])), "size: '", id="size-as-a-string"),
    pytest.param(lambda m: m.update(size=float(m["size"])), "is not of type 'integer'", id="size-as-a-float"),
    pytest.param(lambda m: m["row_counts"].update(movement_library=-1), "row_counts/movement_library: -1 is less than the minimum of 0",
                 id="a-negative-row-count"),
    pytest.param(lambda m: m["row_counts"].update(movement_library="8"), "row_counts/movement_library: '8' is not of type 'integer'",
                 id="a-row-count-as-a-string"),
    pytest.param(lambda m: m.update(signature_hint="trust me"), "Additional properties are not allowed ('signature_hint' was unexpected)",
                 id="an-extra-key"),
    pytest.param(lambda m: m.update(sha256=m["sha256"].upper()), "sha256: '", id="a-sha256-that-is-not-lowercase-hex"),
    pytest.param(lambda m: m.update(migrations="0001.movement-library"), "migrations: '0001.movement-library' is not of type 'array'",
                 id="migrations-as-a-string"),
]


@pytest.mark.parametrize(("change", "says"), MANIFEST_FORGERIES)
def test_a_manifest_breaking_its_schema_is_refused_before_any_connection(cli: Cli, copy: Path, target: Target, change: Callable[[dict[str, Any]], None], says: str) -> None:
    edit_manifest(copy, change)
    message = refused(cli, copy, target, says)
    assert "refusing the dump" in message


SMUGGLED_VERSIONS = [
    pytest.param("0.1.0\nDROP TABLE bystander;", "tool_version: '0.1.0\\nDROP TABLE bystander;' does not match", id="a-statement"),
    # Python's `$` matches before a final line break, where the schema's ECMA-262 `$` does not
    pytest.param("0.1.0\n", "tool_version: '0.1.0\\n' holds a control character", id="a-trailing-line-break"),
]


@pytest.mark.parametrize(("version", "says"), SMUGGLED_VERSIONS)
def test_a_line_break_smuggled_through_the_manifest_into_the_header_is_refused(cli: Cli, copy: Path, target: Target, version: str, says: str) -> None:
    """The header's tool version comes from the manifest: it must not carry a line of SQL into
    movelib's own rendering (the forger edits the dump's header to match)."""
    data = copy.read_bytes().replace(b"by movelib 0.1.0;", f"by movelib {version};".encode(), 1)
    copy.write_bytes(data)
    edit_manifest(copy, lambda m: m.update(tool_version=version))
    recompute(copy)
    refused(cli, copy, target, says)


def test_the_untampered_dump_restores_with_inv_restore(cli: Cli, copy: Path, target: Target, source: Source) -> None:
    kept = bystander(target)
    result = cli("restore", "--dump-file", str(copy), "--dsn", target.conninfo, "--yes")
    assert result.code == 0, result.output
    assert "restore: done; row counts match the manifest; verify: ok (library 8, audit 40)" in result.stdout
    assert library_state(target) == source.library
    assert bystander(target) == kept
    assert migrate(target, MIGRATIONS).applied == []  # yoyo's bookkeeping came along


def test_the_untampered_dump_restores_with_psql(copy: Path, target: Target, source: Source) -> None:
    """The guide's Method 4: `psql -1 -v ON_ERROR_STOP=1 -f FILE` applies the same file."""
    proc = subprocess.run(
        [str(tool_path("psql", None)), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(copy)],
        env=child_env(target), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert table_hashes(target) == source.hashes


def test_run_restore_asks_through_its_callback_and_reports_through_echo(copy: Path, target: Target, source: Source) -> None:
    """The package runs a restore without invoke: a refusal at the question changes nothing."""
    lines: list[str] = []
    questions: list[str] = []

    def no(question: str) -> None:
        questions.append(question)
        raise ConfirmationRequired("not confirmed; nothing was touched")

    before = table_hashes(target)
    with pytest.raises(ConfirmationRequired):
        run_restore(settings(), target, RestoreOptions(copy), lines.append, no)
    assert table_hashes(target) == before
    assert lines[0] == f"target: {target.describe()}"  # first, before the dump's checks
    assert lines[1].startswith(f"dump: {copy.name} (sha256 ") and lines[-1].startswith("  movement_")
    assert questions == [f"This merges the dump into the movement tables of {target.describe()} "
                         "(3 version(s) added, 0 removed)."]
    result = run_restore(settings(), target, RestoreOptions(copy), lines.append, questions.append)
    assert lines[-1] == "restore: done; row counts match the manifest; verify: ok (library 8, audit 40)"
    assert result is not None and lines[-len(result.lines()):] == result.lines()  # its text form
    data = result.as_dict()  # and its JSON form
    assert data["counts"]["movement_library"] == 8 and data["verification"]["ok"] is True
    assert data["merged"] == {"added": 3, "removed": 0, "kept": 5, "pointers": 3, "retired": 0}
    assert library_state(target) == source.library


def test_the_known_columns_match_every_prefix_of_the_migrations(pg18: Server, tmp_path: Path) -> None:
    from yoyo import read_migrations

    ids = [m.id for m in read_migrations(str(MIGRATIONS))]
    for count in range(1, len(ids) + 1):
        folder = tmp_path / f"first-{count}"
        folder.mkdir()
        for migration in ids[:count]:
            shutil.copyfile(MIGRATIONS / f"{migration}.sql", folder / f"{migration}.sql")
        with database(pg18) as name:
            migrate(target_from_dsn(pg18.dsn(name), "--dsn"), folder)
            with psycopg.connect(pg18.dsn(name)) as conn:
                found = {table: tuple(r[0] for r in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum", (table,)))
                    for table in dumped_tables()
                    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,)}
        assert found == columns_for(ids[:count]), ids[:count]


def test_the_manifest_schema_names_every_dumped_table() -> None:
    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    assert schema["properties"]["row_counts"]["propertyNames"]["enum"] == list(dumped_tables())


def test_the_check_reads_a_large_dump_in_flat_memory(copy: Path) -> None:
    """A 64 MB dump is checked a block at a time: memory does not grow with the file. What it
    holds is the reading thread's two reads (the one in hand, the one ahead) and a block's lines."""
    from movelib.ship.compress import AHEAD

    data = copy.read_bytes()
    audit = block(data, "movement_audit_log")
    row = audit.split(b"\n")[2] + b"\n"
    filler = row * ((64 << 20) // len(row))
    copy.write_bytes(data.replace(audit, audit[:-3] + filler + b"\\.\n", 1))
    del data, filler
    recompute(copy)
    tracemalloc.start()
    try:
        check_dump_file(copy)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert copy.stat().st_size > 64 << 20
    assert peak < 2 * AHEAD + (8 << 20) < 32 << 20, f"peak {peak >> 20} MiB"
