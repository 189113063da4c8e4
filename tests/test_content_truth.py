"""Content is the truth: the database refuses rows that disagree with their reviewed document, and
`verify`, `verify --file`, `verify --release` and `diff` recompute from what it holds.

Every forged dump below keeps its manifest consistent (sha256 and size recomputed), and is a dump
movelib's format checks accept: only the content can give it away.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb
from support import CANONICAL, MIGRATION_NAMES, ROOT, Cli, Server, database, seed, table_hashes
from test_forged_dumps import block, edit_manifest, recompute

from movelib.base.errors import MigrationError
from movelib.database.migrations import migrate
from movelib.database.target import Target, target_from_dsn
from movelib.ship.dump import dump
from movelib.ship.manifest import manifest_path
from movelib.source.datafile.canonical import canonical_bytes, content_hash

MIGRATIONS = ROOT / "migrations"
BACK_SQUAT = json.loads(CANONICAL.read_text())[0]
assert BACK_SQUAT["slug"] == "back-squat"
OLD_HASH = content_hash(canonical_bytes(BACK_SQUAT)).encode()


@pytest.fixture(scope="module")
def honest(pg18: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A seeded database (its name) and its honest dump."""
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(target)
        yield name, dump(target, MIGRATIONS, tmp_path_factory.mktemp("honest"), update_latest=False).path


@pytest.fixture
def forged_copy(honest: tuple[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / honest[1].name
    shutil.copyfile(honest[1], path)
    shutil.copyfile(manifest_path(honest[1]), manifest_path(path))
    return path


def in_block(table: str, old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    """Replace ``old`` with ``new`` inside one table's COPY block only."""
    def edit(data: bytes) -> bytes:
        part = block(data, table)
        assert old in part, (table, old)
        return data.replace(part, part.replace(old, new, 1), 1)

    return edit


def both(*edits: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        for one in edits:
            data = one(data)
        return data

    return edit


def rehashed(name: str) -> Callable[[bytes], bytes]:
    """The library row and the draft say ``name``, and every hash that names back-squat's
    content (library, draft, audit rows) is recomputed for it: a consistent forgery."""
    new_hash = content_hash(canonical_bytes({**BACK_SQUAT, "name": name})).encode()

    def edit(data: bytes) -> bytes:
        data = in_block("movement_library", b"\tBack Squat\t", f"\t{name}\t".encode())(data)
        data = in_block("movement_staging", b'"name": "Back Squat"', f'"name": "{name}"'.encode())(data)
        return data.replace(OLD_HASH, new_hash)

    return edit


LIBRARY_NAME = in_block("movement_library", b"\tBack Squat\t", b"\tBack Squat (PWNED)\t")
# COPY's text format escapes a newline and a backslash: stored, the name holds "\n\.\nDROP ..."
LIBRARY_NAME_SQL = in_block("movement_library", b"\tBack Squat\t",
                            b"\tBack Squat\\n\\\\.\\nDROP TABLE movement_library;\t")
LIBRARY_NAME_HUGE = in_block("movement_library", b"\tBack Squat\t", b"\t" + b"B" * (10 << 20) + b"\t")
DRAFT_NAME = in_block("movement_staging", b'"name": "Back Squat"', b'"name": "Back Squat (PWNED)"')
AUDIT_HASH = in_block("movement_audit_log", OLD_HASH, b"0" * 64)

REFUSED = [
    pytest.param(LIBRARY_NAME, "movement back-squat version 1 cannot be published: its name differ(s) "
                 "from its approved document", id="library-name-edited-hash-kept"),
    pytest.param(LIBRARY_NAME_SQL, "its name differ(s) from its approved document",
                 id="library-name-holding-end-of-data-and-sql"),
    pytest.param(LIBRARY_NAME_HUGE, "its name differ(s) from its approved document",
                 id="library-name-of-10-mib"),
    pytest.param(DRAFT_NAME, "movement back-squat version 1: content_hash", id="draft-document-edited-hash-kept"),
    pytest.param(both(LIBRARY_NAME, DRAFT_NAME), "is not the sha256 of its document's canonical form",
                 id="library-and-document-edited-consistently-hash-kept"),
    pytest.param(AUDIT_HASH, "names content_hash 0000000000000000000000000000000000000000000000000000000000000000",
                 id="audit-row-names-other-content"),
]


@pytest.mark.parametrize(("forge", "says"), REFUSED)
def test_the_database_refuses_a_restored_row_that_disagrees_with_its_document(
        cli: Cli, forged_copy: Path, migrated_db: Target, forge: Callable[[bytes], bytes], says: str) -> None:
    forged_copy.write_bytes(forge(forged_copy.read_bytes()))
    recompute(forged_copy)
    before = table_hashes(migrated_db)
    result = cli("restore", "--dump-file", str(forged_copy), "--dsn", migrated_db.conninfo, "--yes")
    assert result.code == 1, result.output[-2000:]
    assert "failed and was rolled back; the target is unchanged" in result.stderr
    assert says in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.output
    assert len(result.output) < 20_000  # a 10 MiB value is not echoed
    assert table_hashes(migrated_db) == before


def test_a_consistent_forgery_restores_but_verify_file_and_diff_name_it(
        cli: Cli, forged_copy: Path, migrated_db: Target, honest: tuple[str, Path], pg18: Server) -> None:
    """Library, document and every hash edited together: the database cannot tell (the row is
    what its document says), but it is not the reviewed content."""
    forged_copy.write_bytes(rehashed("Back Squat (PWNED)")(forged_copy.read_bytes()))
    recompute(forged_copy)
    # the manifest's library digest still names the honest library: the restore compares it
    refused = cli("restore", "--dump-file", str(forged_copy), "--dsn", migrated_db.conninfo, "--yes")
    assert refused.code == 1 and "differs from the manifest's library_sha256" in refused.stderr
    edit_manifest(forged_copy, lambda m: m.pop("library_sha256"))  # as manifests before it had none
    recompute(forged_copy)
    assert cli("restore", "--dump-file", str(forged_copy), "--dsn", migrated_db.conninfo, "--yes").code == 0
    checked = cli("verify", "--dsn", migrated_db.conninfo, "--file", str(CANONICAL))
    assert checked.code == 1
    assert "back-squat: differs between the data file and the library" in checked.output
    drift = cli("diff", "--from", pg18.dsn(honest[0]), "--to", migrated_db.conninfo)
    assert drift.code == 1
    assert "!! CONFLICT back-squat: v1 -> v1; different content in v1" in drift.stdout


def _with_triggers_off(target: Target, *statements: str) -> None:
    """Write as a superuser can behind the database's back: triggers off for the session."""
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def seeded(migrated_db: Target) -> Target:
    seed(migrated_db)
    return migrated_db


BEHIND_ITS_BACK = [
    pytest.param(["UPDATE movement_library SET name = 'Back Squat (PWNED)' WHERE slug = 'back-squat'"],
                 ["back-squat v1: library name 'Back Squat (PWNED)' differs from its approved document 'Back Squat'",
                  "back-squat: differs between the data file and the library"],
                 id="library-name-edited"),
    pytest.param(["UPDATE movement_library SET equipment = '{rack,barbell}' WHERE slug = 'back-squat'"],
                 ['back-squat v1: library equipment ["rack", "barbell"] differs from its approved document '
                  '["barbell", "rack"]'],
                 id="library-list-reordered"),
    pytest.param(["UPDATE movement_staging SET document = jsonb_set(document, '{name}', '\"Back Squat (PWNED)\"') "
                  "WHERE slug = 'back-squat'"],
                 ["back-squat v1: draft content_hash", "is not the sha256 of its document's canonical form",
                  "back-squat v1: library name 'Back Squat' differs from its approved document 'Back Squat (PWNED)'"],
                 id="draft-document-edited"),
    pytest.param(["UPDATE movement_staging SET document = jsonb_set(document, '{name}', '\"Back Squat (PWNED)\"') "
                  "WHERE slug = 'back-squat'",
                  "UPDATE movement_library SET name = 'Back Squat (PWNED)' WHERE slug = 'back-squat'"],
                 ["back-squat v1: draft content_hash", "back-squat: differs between the data file and the library"],
                 id="library-and-document-edited-consistently"),
]


@pytest.mark.parametrize(("statements", "says"), BEHIND_ITS_BACK)
def test_verify_recomputes_what_was_written_behind_the_databases_back(
        cli: Cli, seeded: Target, statements: list[str], says: list[str]) -> None:
    _with_triggers_off(seeded, *statements)
    result = cli("verify", "--dsn", seeded.conninfo, "--file", str(CANONICAL))
    assert result.code == 1, result.output
    for line in says:
        assert line in result.output, result.output
    assert "each as in the file: yes" not in result.output


def test_diff_recomputes_both_sides(cli: Cli, seeded: Target, pg18: Server, honest: tuple[str, Path]) -> None:
    _with_triggers_off(seeded, "UPDATE movement_library SET name = 'Back Squat (PWNED)' WHERE slug = 'back-squat'")
    result = cli("diff", "--from", pg18.dsn(honest[0]), "--to", seeded.conninfo)
    assert result.code == 1, result.output
    assert ("!! CONFLICT back-squat: v1 -> v1; different content in v1 "
            f"({OLD_HASH.decode()[:12]}... vs the library row differs from its approved document)") in result.stdout
    same = cli("diff", "--from", seeded.conninfo, "--to", seeded.conninfo)  # even against itself
    assert same.code == 1 and "back-squat" in same.stdout


def test_verify_release_recomputes_the_library_digest(seeded: Target, tmp_path: Path) -> None:
    from movelib.seed.verify import verify
    from movelib.ship.release_check import comparison

    manifest = dump(seeded, MIGRATIONS, tmp_path, update_latest=False, release="v1.0").manifest
    assert verify(seeded, schema_file=ROOT / "schemas" / "movement.schema.json",
                  release=comparison("v1.0", manifest)).ok
    _with_triggers_off(seeded, "UPDATE movement_library SET name = 'Back Squat (PWNED)' WHERE slug = 'back-squat'")
    report = verify(seeded, schema_file=ROOT / "schemas" / "movement.schema.json", release=comparison("v1.0", manifest))
    assert not report.ok
    assert any("release v1.0: the library's content differs from the release's" in p for p in report.problems)


DOCUMENT: dict[str, Any] = {"slug": "x", "name": "X", "classification": "squat", "equipment": [],
            "primary_muscles": ["quadriceps"], "secondary_muscles": [], "level": "beginner",
            "instructions": ["go"]}
HASH = content_hash(canonical_bytes(DOCUMENT))
LIBRARY = ("INSERT INTO movement_library (slug, version, name, classification, equipment, primary_muscles, "
           "secondary_muscles, level, instructions, content_hash, published_by, staging_id) "
           "VALUES ('x', 1, %s, 'squat', %s, '{quadriceps}', '{}', 'beginner', '{go}', %s, 'me', %s)")


def _approved_draft(conn: psycopg.Connection, document: dict[str, object] = DOCUMENT) -> int:
    row = conn.execute("INSERT INTO movement_staging (slug, version, document, content_hash, status) "
                       "VALUES ('x', 1, %s, %s, 'approved') RETURNING id",
                       (Jsonb(document), content_hash(canonical_bytes(document)))).fetchone()
    assert row is not None
    conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor) "
                 "VALUES ('APPROVED', 'x', 1, 'alice'), ('APPROVED', 'x', 1, 'bob')")
    return int(row[0])


@pytest.mark.parametrize(("write", "says"), [
    pytest.param(lambda c: c.execute("INSERT INTO movement_staging (slug, version, document, content_hash) "
                                     "VALUES ('x', 1, %s, %s)", (Jsonb(DOCUMENT), "a" * 64)),
                 "is not the sha256 of its document's canonical form", id="draft-with-another-hash"),
    pytest.param(lambda c: c.execute(LIBRARY, ("Not X", "{}", HASH, _approved_draft(c))),
                 "its name differ(s) from its approved document", id="library-name-not-the-documents"),
    pytest.param(lambda c: c.execute(LIBRARY, ("X", "{barbell}", HASH, _approved_draft(c))),
                 "its equipment differ(s) from its approved document", id="library-list-not-the-documents"),
    pytest.param(lambda c: (_approved_draft(c), c.execute(
        "INSERT INTO movement_audit_log (action, slug, version, actor, details) "
        "VALUES ('PUBLISHED', 'x', 1, 'me', %s)", (Jsonb({"content_hash": "b" * 64}),))),
                 "names content_hash", id="audit-row-naming-other-content-than-its-draft"),
    pytest.param(lambda c: (_approved_draft(c), c.execute(
        "UPDATE movement_staging SET status = 'draft' WHERE false"),
        c.execute("INSERT INTO movement_staging (slug, version, document, content_hash) VALUES "
                  "('y', 1, %s, %s)", (Jsonb({**DOCUMENT, "slug": "y", "extra": [1, {"b": 2.5, "a": None}]}),
                                       content_hash(canonical_bytes({**DOCUMENT, "slug": "y", "extra": [1, {"b": 2.5, "a": None}]}))))),
                 None, id="a-document-of-another-shape-with-its-right-hash-is-taken"),
])
def test_a_hand_written_row_that_disagrees_is_refused(migrated_db: Target, write: Callable[[psycopg.Connection], object],
                                                       says: str | None) -> None:
    with psycopg.connect(migrated_db.conninfo) as conn:
        if says is None:
            write(conn)
            return
        with pytest.raises(psycopg.errors.RaiseException, match=r".*" + says.replace("(", r"\(").replace(")", r"\)")):
            write(conn)


@pytest.mark.parametrize("text", ["plain", 'a "quoted" word', "back\\slash", "tab\there", "line\nbreak",
                                  "\x01\x1f control", "ünïcödé ☃ 深蹲", "\u2028 separators \u2029",
                                  'ends with a backslash\\', '", "'])
def test_the_databases_canonical_form_is_pythons(migrated_db: Target, text: str) -> None:
    """movement_canonical writes what canonical_bytes writes, for every kind of string."""
    documents: list[dict[str, Any]] = [{**DOCUMENT, "name": text, "instructions": [text, "x", text], "aliases": [text]},
                 {"free": text, "nested": {"b": [text, True, None, 3], "a": {}}, "list": [[text], []]}]
    with psycopg.connect(migrated_db.conninfo) as conn:
        for document in documents:
            row = conn.execute("SELECT movement_canonical(%s), movement_content_hash(%s)",
                               (Jsonb(document), Jsonb(document))).fetchone()
            assert row == (canonical_bytes(document).decode(), content_hash(canonical_bytes(document)))


MOVEMENT_KEYS = ("aliases", "classification", "coaching_cues", "equipment", "force", "instructions",
                 "laterality", "level", "mechanic", "name", "primary_muscles", "secondary_muscles", "slug")
LISTS = ("aliases", "coaching_cues", "equipment", "instructions", "primary_muscles", "secondary_muscles")
# text that meets every branch of the fast way: quotes, backslashes, the list separator itself
TRICKY = st.text(alphabet=st.sampled_from(['"', "\\", ",", " ", "a", "\n", "\x01", "é", "深", "[", "{"]),
                 max_size=8) | st.text(st.characters(codec="utf-8",  # no surrogates, and
                                                     exclude_characters="\x00"), max_size=12)  # no NUL: jsonb holds none
SCALAR = st.none() | st.booleans() | st.integers(-5, 5) | TRICKY
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(TRICKY, inner, max_size=3), max_leaves=6)


@st.composite
def movement_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A document with a subset of the movement keys, mostly strings and lists of strings (the
    database's fast way), sometimes anything (its general way), sometimes an unknown key."""
    document: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(MOVEMENT_KEYS), unique=True)):
        typical = st.lists(TRICKY, max_size=4) if key in LISTS else TRICKY
        document[key] = draw(typical | VALUE if draw(st.integers(0, 5)) == 0 else typical)
    if draw(st.integers(0, 9)) == 0:
        document[draw(TRICKY)] = draw(VALUE)
    return document


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=movement_shaped())
@example(document={"aliases": [", ", "x"]})  # 0004 took the string ", " for a separator
@example(document={"force": ", "})
@example(document={"classification": ["", ""]})  # 0004 wrote a list in a scalar field as jsonb does
@example(document={"aliases": [[", "]]})  # lax jsonpath took a list in a list for strings
@example(document={"name": [[", "]]})
@example(document={"aliases": [["a"], ["b"]]})
@example(document={"aliases": [[], []]})
@example(document={"aliases": [["a", "b"], "c"]})
def test_the_databases_hash_is_pythons_for_any_movement_shaped_document(migrated_db: Target,
                                                                        document: dict[str, Any]) -> None:
    """Migration 0006's inlined hash against canonical_bytes: absent keys, nulls, empty lists,
    strings holding the separators the fast way replaces, and documents it must leave to the
    general way."""
    with psycopg.connect(migrated_db.conninfo) as conn:
        row = conn.execute("SELECT movement_canonical(%s), movement_content_hash(%s)",
                           (Jsonb(document), Jsonb(document))).fetchone()
    assert row == (canonical_bytes(document).decode(), content_hash(canonical_bytes(document)))


def test_migration_0004_refuses_a_database_holding_unreviewed_content(empty_db: Target, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in sorted(MIGRATIONS.glob("000[123]*.sql")):
        shutil.copy(path, folder)
    migrate(empty_db, folder)
    seed(empty_db, skip_migrations=True)
    _with_triggers_off(empty_db, "UPDATE movement_library SET name = 'Back Squat (PWNED)' WHERE slug = 'back-squat'")
    with pytest.raises(MigrationError, match=r"the library row of movement back-squat version 1 disagrees with its "
                                             r"approved document \(name\)"):
        migrate(empty_db, MIGRATIONS)
    with psycopg.connect(empty_db.conninfo) as conn:  # nothing of 0004 stayed
        assert conn.execute(sql.SQL("SELECT to_regclass('movement_library_content')")).fetchone() == (None,)


@pytest.mark.parametrize(("forged_aliases", "reviewed_aliases"), [
    ([", "], [","]),  # the string ', ' taken for a separator
    ([[", "]], [[","]]),  # a list in a list taken for strings
], ids=["comma-space", "nested-list"])
def test_a_draft_0004_hashed_wrongly_is_refused_now_and_stops_migration_0006(
        empty_db: Target, tmp_path: Path, forged_aliases: list[Any], reviewed_aliases: list[Any]) -> None:
    """0004 took a string ', ' for a list separator, and a list in a list for strings: a draft
    whose aliases were [', '] (or [[', ']]) was accepted under the hash of the document whose
    aliases were [','] (or [[',']]). Under 0001-0005 the forgery goes in; 0006 refuses to
    migrate a database holding it, and once gone the same INSERT is refused."""
    reviewed = {**DOCUMENT, "aliases": reviewed_aliases}
    forged = {**DOCUMENT, "aliases": forged_aliases}
    insert = ("INSERT INTO movement_staging (slug, version, document, content_hash) "
              "VALUES ('x', 1, %s, %s)")
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in sorted(MIGRATIONS.glob("000[12345]*.sql")):
        shutil.copy(path, folder)
    migrate(empty_db, folder)
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute(insert, (Jsonb(forged), content_hash(canonical_bytes(reviewed))))
    with pytest.raises(MigrationError, match=r"the draft of movement x version 1 has a content_hash that is not "
                                             r"its document's \(migration 0004"):
        migrate(empty_db, MIGRATIONS)
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("DELETE FROM movement_staging")
    assert migrate(empty_db, MIGRATIONS).applied == MIGRATION_NAMES[5:]
    with psycopg.connect(empty_db.conninfo) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="is not the sha256 of its document's canonical form"):
            conn.execute(insert, (Jsonb(forged), content_hash(canonical_bytes(reviewed))))
        conn.rollback()
        conn.execute(insert, (Jsonb(forged), content_hash(canonical_bytes(forged))))  # its own hash: taken


def test_an_audit_row_without_its_draft_is_named_by_verify(cli: Cli, seeded: Target) -> None:
    """Loaded before its draft (or with none), an audit row cannot be checked by the database;
    verify names it."""
    with psycopg.connect(seeded.conninfo) as conn:
        conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor, details) "
                     "VALUES ('CREATED', 'ghost', 1, 'me', %s)", (Jsonb({"content_hash": "c" * 64}),))
    result = cli("verify", "--dsn", seeded.conninfo)
    assert result.code == 1
    assert "ghost v1: audit row CREATED names content_hash cccccccccccc" in result.output


def test_verify_file_names_the_retired_movements_the_file_cannot_speak_for(cli: Cli, migrated_db: Target) -> None:
    """A movement published and retired behind the triggers (a forged chain no seed wrote, as a
    forged dump restored leaves it) is no current movement, so the file cannot judge it: verify
    --file says so and names it, instead of a bare "matches: yes"."""
    seed(migrated_db, CANONICAL)
    forged = "forged-lift"
    with psycopg.connect(migrated_db.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        copied = ("name, classification, equipment, primary_muscles, secondary_muscles, level, instructions, "
                  "aliases, laterality, force, mechanic, coaching_cues, content_hash")
        (draft,), = conn.execute("INSERT INTO movement_staging (slug, version, status, document, content_hash, "
                                 "seed_run_id) SELECT %s, 1, status, document, content_hash, seed_run_id "
                                 "FROM movement_staging WHERE slug = 'back-squat' RETURNING id", (forged,))
        conn.execute(f"INSERT INTO movement_library (slug, version, {copied}, published_by, staging_id, seed_run_id) "
                     f"SELECT %s, 1, {copied}, 'mallory', %s, seed_run_id FROM movement_library "
                     "WHERE slug = 'back-squat'", (forged, draft))
        for action in ("CREATED", "REVIEW_SUBMITTED", "APPROVED", "APPROVED", "PUBLISHED", "RETIRED"):
            conn.execute("INSERT INTO movement_audit_log (action, slug, version, actor) VALUES (%s, %s, 1, 'mallory')",
                         (action, forged))
    result = cli("verify", "--dsn", migrated_db.conninfo, "--file", str(CANONICAL))
    assert "not compared with the file (it holds current movements only): 1 retired movement(s) " \
           f"({forged})" in result.stdout, result.output
    as_json = cli("verify", "--dsn", migrated_db.conninfo, "--file", str(CANONICAL), "--json")
    assert json.loads(as_json.stdout)["not_compared_with_file"]["retired_first"] == [forged]
    honest_run = cli("verify", "--dsn", migrated_db.conninfo)  # without --file: nothing to say
    assert "not compared with the file" not in honest_run.stdout


@pytest.mark.parametrize("column", ["name", "instructions"])
def test_a_seed_whose_publish_step_derives_another_row_is_refused_by_the_database(
        migrated_db: Target, monkeypatch: pytest.MonkeyPatch, column: str) -> None:
    """The seed path of the publish check's projection branch: the seed's own library statement,
    made to derive one column other than the approved document says (a bug in movelib, or a
    caller of the package with its own SQL), is refused by the database, and nothing is written."""
    original = psycopg.Cursor.execute
    edited = {"name": ("d.name", "d.name || ' (edited)'"),
              "instructions": ("d.instructions", "d.instructions || ARRAY['and one more step']")}[column]

    def execute(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.lstrip().startswith("INSERT INTO movement_library (slug, version,"):
            assert edited[0] in query
            query = query.replace(edited[0], edited[1], 1)
        return original(self, query, *args, **kwargs)

    before = table_hashes(migrated_db)
    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    with pytest.raises(Exception, match=rf"cannot be published: its {column} differ\(s\) from its approved document"):
        seed(migrated_db, CANONICAL)
    monkeypatch.undo()
    assert table_hashes(migrated_db) == before
