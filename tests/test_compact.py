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

from movelib import db
from movelib.datafile import Entries, load_movements
from movelib.datafile import load as load_module
from movelib.plan import make_plan
from movelib.synth import write_synthetic
from movelib.target import Target, target_from_dsn
from movelib.verify import check
from movelib.workflow import SeedOptions, run_seed

# Byte order and a linguistic order disagree on all of these: "é" sorts after "z" in the first
# and between "e" and "f" in the second; "B" before "a" in the first only.
SLUGS = ["e-move", "é-move", "f-move", "z", "ab", "a-b", "abc", "Bee", "ä", "ß", "東京", "a"]


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


@pytest.fixture
def icu_db(pg15: Server) -> Iterator[Target]:
    """A database whose default collation is ICU's root locale, not byte order (on Debian's
    PostgreSQL 15: the embedded 18 is built without ICU)."""
    server = pg15
    name = f"t_icu_{uuid.uuid4().hex[:12]}"
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu "
                             "ICU_LOCALE 'und' LOCALE 'C'").format(sql.Identifier(name)))
    try:
        yield target_from_dsn(server.dsn(name), "--dsn")
    finally:
        server.drop_database(name)


def test_plans_and_verification_merge_in_byte_order_whatever_the_collation(
        icu_db: Target, tmp_path: Path) -> None:
    schema = permissive_schema(tmp_path)
    config = dataclasses.replace(settings(), schema_file=schema)
    path = tmp_path / "slugs.json"
    path.write_text(json.dumps(movements(SLUGS)), encoding="utf-8")
    run_seed(config, icu_db, SeedOptions(data_file=path), lambda _: None)
    with db.connect(icu_db, autocommit=True) as conn:  # the test means something only if ...
        linguistic = [r[0] for r in conn.execute("SELECT slug FROM movement_current ORDER BY slug")]
    assert linguistic != sorted(SLUGS)  # ... the database's own order is not byte order

    # The same file again, bytes changed (indented): every movement found unchanged.
    path.write_text(json.dumps(movements(SLUGS), indent=2), encoding="utf-8")
    dataset = load_movements(path, schema)
    with db.connect(icu_db, autocommit=True) as conn, conn.transaction():
        plan = make_plan(conn, dataset, new_versions=True, retire=True)
        assert plan.totals()["unchanged"] == len(SLUGS) and not plan.writes_anything
        assert check(conn, icu_db, dataset).ok

    # One renamed, one dropped, one added: each found as exactly that, whatever its place.
    changed = [s for s in SLUGS if s != "ß"] + ["ö-new"]
    path.write_text(json.dumps(movements(changed, renamed="é-move")), encoding="utf-8")
    dataset = load_movements(path, schema)
    with db.connect(icu_db, autocommit=True) as conn, conn.transaction():
        plan = make_plan(conn, dataset, new_versions=True, retire=True)
        fates = {c.slug: (c.status, c.action, c.current_version, c.next_version)
                 for c in plan.changes if c.status != "unchanged"}
        assert fates == {"é-move": ("changed", "publish", 1, 2), "ö-new": ("new", "publish", None, 1),
                         "ß": ("missing", "retire", 1, None)}
        report = check(conn, icu_db, dataset)
    assert sorted(report.problems) == sorted([
        "é-move: differs between the data file and the library",
        "ö-new: is in the data file but not in the library",
        "ß: is a current movement but not in the data file"])
    lines: list[str] = []
    run_seed(config, icu_db, SeedOptions(data_file=path, new_versions=True, retire=True),
             lines.append)
    assert "seed: 2 published (1 new versions), 10 unchanged, 1 retired (seed run 2)" in lines
    assert "verify: ok (library 14, current 12, staging 14, audit_log 71)" in lines


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
    assert entries.duplicate() is None
    assert [SLUGS[i] for i in entries.by_slug()] == sorted(SLUGS, key=lambda s: s.encode())
    entries.add(["ab"], [bytes(32)])
    assert entries.duplicate() == "ab"


def test_a_validated_file_keeps_no_object_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     migrated_db: Target) -> None:
    """What a seed holds between its passes, per movement: the entries about 75 bytes (an object
    per record took 430), the plan 9. Measured by tracemalloc, not by the clock."""
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
    assert entries / count < 100, f"{entries / count:.0f} bytes a record"
    assert planned / count < 16, f"{planned / count:.0f} bytes a movement"
