"""A million movements in flat memory: the compact entries and plan, and the slug order their
merge joins with PostgreSQL rely on."""

from __future__ import annotations

import dataclasses
import json
import pickle
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from support import CANONICAL, SCHEMA, Server, settings

from movelib.base.errors import DataFileError
from movelib.database import db
from movelib.database.target import Target, target_from_dsn
from movelib.seed.plan import make_plan
from movelib.seed.publish import publish
from movelib.seed.verify import check
from movelib.seed.workflow import SeedOptions, run_seed
from movelib.source.datafile import Entries, load_movements
from movelib.source.datafile import load as load_module
from movelib.source.synth import write_synthetic

# The order of UTF-8 bytes, a linguistic order and WIN1252's bytes disagree on these: "é" sorts
# after "z" in the first, between "e" and "f" in the second, before "€" in the third; "B" before
# "a" in the first only. A laxer schema lets a slug hold a tab, a newline or a backslash.
SLUGS = ["e-move", "é-move", "€-move", "f-move", "z", "ab", "a-b", "abc", "Bee", "ä", "ß", "a",
         "tab\there", "new\nline", "back\\slash"]


def permissive_schema(folder: Path) -> Path:
    """movement.schema.json with any non-empty string as a slug (a third party's catalogue)."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    schema["$defs"]["slug"] = {"type": "string", "minLength": 1}
    path = folder / "permissive.schema.json"
    path.write_text(json.dumps(schema), encoding="utf-8")
    return path


def movements(slugs: list[str], renamed: str | None = None) -> list[dict[str, object]]:
    records = json.loads(CANONICAL.read_text(encoding="utf-8"))
    return [{**records[len(slug) % len(records)], "slug": slug,  # the same for the same slug
             "name": "Renamed" if slug == renamed else f"Movement {slug}"} for slug in slugs]


# Databases whose own order of slugs is not the byte order of their UTF-8: ICU's root locale
# (Debian's PostgreSQL 15; the embedded 18 is built without ICU), and WIN1252 bytes.
ORDERS = {
    "icu": ("pg15", "LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C'"),
    "win1252": ("pg18", "ENCODING 'WIN1252' LOCALE 'C'"),
}


# a database on PostgreSQL 15 carries its marker (the fixture is named by a key, not "pg15")
@pytest.fixture(params=[pytest.param(key, marks=[pytest.mark.pg15] if server == "pg15" else [])
                        for key, (server, _) in ORDERS.items()])
def other_order_db(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A migrated database whose ``ORDER BY slug`` is not byte order, each of ORDERS."""
    fixture, options = ORDERS[request.param]
    server: Server = request.getfixturevalue(fixture)
    name = f"t_order_{uuid.uuid4().hex[:12]}"
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 " + options).format(
            sql.Identifier(name)))
    try:
        yield target_from_dsn(server.dsn(name), "--dsn")
    finally:
        server.drop_database(name)


def test_plans_and_verification_merge_in_byte_order_whatever_the_database(
        other_order_db: Target, tmp_path: Path) -> None:
    schema = permissive_schema(tmp_path)
    config = dataclasses.replace(settings(), schema_file=schema)
    path = tmp_path / "slugs.json"
    path.write_text(json.dumps(movements(SLUGS)), encoding="utf-8")
    run_seed(config, other_order_db, SeedOptions(data_file=path), lambda _: None)
    with db.connect(other_order_db, autocommit=True) as conn:  # the test means something only if ...
        linguistic = [r[0] for r in conn.execute("SELECT slug FROM movement_current ORDER BY slug")]
    assert linguistic != sorted(SLUGS)  # ... the database's own order is not byte order
    with db.connect(other_order_db, autocommit=True) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT slug FROM movement_current")) == sorted(SLUGS)

    # The same file again, bytes changed (indented): every movement found unchanged.
    path.write_text(json.dumps(movements(SLUGS), indent=2), encoding="utf-8")
    dataset = load_movements(path, schema)
    with db.connect(other_order_db, autocommit=True) as conn, conn.transaction():
        plan = make_plan(conn, dataset, new_versions=True, retire=True)
        assert plan.totals()["unchanged"] == len(SLUGS) and not plan.writes_anything
        assert check(conn, other_order_db, dataset).ok

    # One renamed, one dropped, one added: each found as exactly that, whatever its place.
    changed = [s for s in SLUGS if s != "ß"] + ["ö-new"]
    path.write_text(json.dumps(movements(changed, renamed="tab\there")), encoding="utf-8")
    dataset = load_movements(path, schema)
    with db.connect(other_order_db, autocommit=True) as conn, conn.transaction():
        plan = make_plan(conn, dataset, new_versions=True, retire=True)
        fates = {c.slug: (c.status, c.action, c.current_version, c.next_version)
                 for c in plan.changes if c.status != "unchanged"}
        assert fates == {"tab\there": ("changed", "publish", 1, 2), "ö-new": ("new", "publish", None, 1),
                         "ß": ("missing", "retire", 1, None)}
        report = check(conn, other_order_db, dataset)
    assert sorted(report.problems) == sorted([
        "tab\there: differs between the data file and the library",
        "ö-new: is in the data file but not in the library",
        "ß: is a current movement but not in the data file"])
    assert "  problem: tab\\there: differs between the data file and the library" in report.lines()
    lines: list[str] = []
    run_seed(config, other_order_db, SeedOptions(data_file=path, new_versions=True, retire=True),
             lines.append)
    assert "seed: 2 published (1 new versions), 13 unchanged, 1 retired (seed run 2)" in lines
    assert "verify: ok (library 17, current 15, staging 17, audit_log 86)" in lines
    with db.connect(other_order_db, autocommit=True) as conn:  # the slugs went in as they are
        stored = {r[0] for r in conn.execute("SELECT slug FROM movement_library")}
    assert stored == {*SLUGS, "ö-new"}


def test_a_merge_join_refuses_rows_out_of_byte_order() -> None:
    entries = Entries(["b", "a", "c"], b"\0" * 96)
    assert [index for index, _ in entries.join([("a",), ("b",), ("bb",), ("c",)])] == [1, 0, None, 2]
    with pytest.raises(RuntimeError, match="out of slug order"):
        list(entries.join([("b",), ("a",)]))


def test_entries_survive_the_trip_from_the_validation_child_and_find_duplicates() -> None:
    entries = Entries(SLUGS, bytes(range(32)) * len(SLUGS))
    copy = Entries(*pickle.loads(pickle.dumps((entries.slugs, entries.raw_hashes))))
    assert copy == entries and list(copy.slugs) == SLUGS
    assert entries[1] == (1, "é-move", bytes(range(32)).hex())
    assert entries[-1] == (len(SLUGS) - 1, SLUGS[-1], bytes(range(32)).hex())
    for outside in (len(SLUGS), -len(SLUGS) - 1):
        with pytest.raises(IndexError):
            entries[outside]
    assert entries.duplicate() is None
    assert [SLUGS[i] for i in entries.by_slug()] == sorted(SLUGS, key=lambda s: s.encode())
    entries.add(["ab"], [bytes(32)])
    assert entries.duplicate() == "ab"


def test_a_validated_file_keeps_no_object_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     migrated_db: Target) -> None:
    """What a seed holds between its passes, per movement: the entries about 90 bytes with their
    buffers' slack (an object per record took 430; a str per slug alone would pass 120), the plan
    9. Measured by tracemalloc, not by the clock."""
    count = 20_000
    path = tmp_path / "synth.json"
    write_synthetic(count, path)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 1 << 40)  # one process: all traced
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        dataset = load_movements(path, SCHEMA)
        dataset.entries.by_slug()  # the order the plan and verification merge in, kept
        entries = tracemalloc.get_traced_memory()[0] - before
        with db.connect(migrated_db, autocommit=True) as conn, conn.transaction():
            before = tracemalloc.get_traced_memory()[0]
            plan = make_plan(conn, dataset, new_versions=False, retire=False)
            planned = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert plan.totals()["new"] == count
    assert entries / count < 120, f"{entries / count:.0f} bytes a record"
    assert planned / count < 16, f"{planned / count:.0f} bytes a movement"


def test_a_stream_left_early_ends_its_cursor_and_savepoint_with_the_error(migrated_db: Target) -> None:
    entries = Entries(["a", "b"], bytes(64))
    with db.connect(migrated_db, autocommit=True) as conn, conn.transaction():
        with pytest.raises(RuntimeError, match="out of slug order"), \
                db.stream(conn, "SELECT * FROM (VALUES ('b'), ('a')) AS v (slug)") as rows:
            list(entries.join(rows))
        assert conn.execute("SELECT 42").fetchone() == (42,)  # the transaction goes on
        with db.stream(conn, "SELECT 'a'") as rows:  # and the cursor's name is free again
            assert [i for i, _ in entries.join(rows)] == [0]


def test_a_file_that_grew_after_validation_is_refused_by_name(migrated_db: Target, tmp_path: Path) -> None:
    path = tmp_path / "movements.json"
    path.write_text(json.dumps(movements(["a", "b"])), encoding="utf-8")
    dataset = load_movements(path, SCHEMA)
    path.write_text(json.dumps(movements(["a", "b", "c"])), encoding="utf-8")  # after validation
    with db.connect(migrated_db, autocommit=True) as conn:
        with pytest.raises(DataFileError, match="changed while it was being seeded; nothing was written"), \
                conn.transaction():
            plan = make_plan(conn, dataset, new_versions=False, retire=False)
            publish(conn, dataset, plan, schema_sha256="0" * 64)
        assert conn.execute("SELECT count(*) FROM movement_staging").fetchone() == (0,)
