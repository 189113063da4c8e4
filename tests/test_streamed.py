"""The 1M paths in flat memory (issue 22): `inv diff`, the dry run's JSON, a retire and the
restore's preview stream what they used to hold, with the same results as before. Each is
checked against the way it was computed when held whole (the reference), byte for byte where
it prints, and for not holding everything (structurally, or by tracemalloc at a size that runs
in seconds; never by the clock)."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql
from support import CANONICAL, Cli, Server, rows, seed, settings
from test_compact import SLUGS, movements, permissive_schema

from movelib.base.defaults import SHOWN
from movelib.base.errors import DatabaseError
from movelib.base.spill import SortedSpill
from movelib.base.text import as_json, json_blocks, json_chunks
from movelib.database import db
from movelib.database.tables import NOT_ITS_DOCUMENT
from movelib.database.target import Target, target_from_dsn
from movelib.seed import diff
from movelib.seed.diff import DriftReport
from movelib.seed.drift import Difference, Movement, merge
from movelib.seed.plan import make_plan
from movelib.seed.workflow import SeedOptions, run_seed
from movelib.ship.dumplibrary import DumpLibrary
from movelib.source.datafile import load_movements
from movelib.source.synth import write_synthetic

# -- the reference: a side read as one JSON document and compared whole, as before issue 22 ----

_WHOLE = """
SELECT json_build_object(
  'versions', (SELECT coalesce(json_agg(json_build_array(
                        slug, version, coalesce(content_hash, 'NOT_ITS_DOCUMENT'))), '[]')
                 FROM movement_library_content),
  'current', (SELECT coalesce(json_object_agg(slug, version), '{}') FROM movement_current)
)::text
""".replace("NOT_ITS_DOCUMENT", NOT_ITS_DOCUMENT)
_ORDER = ("CONFLICT", "ONLY", "VERSION", "RETIRED")


def held_whole(target: Target) -> tuple[dict[str, dict[int, str]], dict[str, int]]:
    data = orjson.loads(rows(target, _WHOLE)[0][0])
    versions: dict[str, dict[int, str]] = {}
    for slug, version, content_hash in data["versions"]:
        versions.setdefault(slug, {})[version] = content_hash
    return versions, data["current"]


def _state(versions: dict[str, dict[int, str]], current: dict[str, int], slug: str) -> str:
    if slug not in versions:
        return "absent"
    return f"v{current[slug]}" if slug in current else f"retired (v{max(versions[slug])})"


def _short(value: str) -> str:
    return ("the library row differs from its approved document" if value == NOT_ITS_DOCUMENT
            else f"{value[:12]}...")


def reference_report(source: Target, destination: Target) -> dict[str, Any]:
    """The report as `inv diff --json` built it before: both sides whole, sorted by slug."""
    (a, ca), (b, cb) = held_whole(source), held_whole(destination)
    found: list[dict[str, str]] = []
    for slug in sorted(a.keys() | b.keys()):
        here, there = _state(a, ca, slug), _state(b, cb, slug)
        if slug not in a or slug not in b:
            found.append({"kind": "ONLY", "slug": slug, "from": here, "to": there, "detail": ""})
            continue
        clash = sorted(v for v in a[slug].keys() & b[slug].keys()
                       if a[slug][v] != b[slug][v] or NOT_ITS_DOCUMENT in (a[slug][v], b[slug][v]))
        if clash:
            found.append({"kind": "CONFLICT", "slug": slug, "from": here, "to": there,
                          "detail": "different content in " + ", ".join(
                              f"v{v} ({_short(a[slug][v])} vs {_short(b[slug][v])})" for v in clash)})
        if here != there:
            retired = (slug in ca) != (slug in cb)
            found.append({"kind": "RETIRED" if retired or slug not in ca else "VERSION",
                          "slug": slug, "from": here, "to": there, "detail": ""})
    found.sort(key=lambda d: (_ORDER.index(d["kind"]), d["slug"]))
    return {"equal": not found, "from": source.masked(), "to": destination.masked(),
            "movements": {"from": len(a), "to": len(b)},
            "counts": {k.lower(): sum(1 for d in found if d["kind"] == k) for k in _ORDER},
            "differences": [{**d, "kind": d["kind"].lower()} for d in found]}


# -- two libraries in a database whose own slug order is not byte order ---------------------

@pytest.fixture
def two_libraries(pg18: Server, tmp_path: Path) -> Iterator[tuple[Target, Target]]:
    """Two WIN1252 databases (their ORDER BY slug is not byte order) holding SLUGS, the second
    drifted in every way: a conflict, a new version, a retired movement, one only in each."""
    names = [f"t_stream_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with pg18.admin() as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'WIN1252' "
                                 "LOCALE 'C'").format(sql.Identifier(name)))
    try:
        a, b = (target_from_dsn(pg18.dsn(name), "--dsn") for name in names)
        config = dataclasses.replace(settings(), schema_file=permissive_schema(tmp_path))
        path = tmp_path / "slugs.json"

        def seed_with(target: Target, slugs: list[str], renamed: str | None = None,
                      **options: Any) -> None:
            path.write_text(json.dumps(movements(slugs, renamed=renamed)), encoding="utf-8")
            run_seed(config, target, SeedOptions(data_file=path, **options), lambda _: None)

        seed_with(a, SLUGS)
        seed_with(b, [s for s in SLUGS if s != "ß"] + ["ö-only-here"], renamed="é-move")
        seed_with(b, [s for s in SLUGS if s not in ("ß", "a-b")] + ["ö-only-here"],
                  renamed="tab\there", new_versions=True, retire=True)
        yield a, b
    finally:
        for name in names:
            pg18.drop_database(name)


def test_diff_streams_the_report_it_built_whole_byte_for_byte(
        cli: Cli, two_libraries: tuple[Target, Target]) -> None:
    a, b = two_libraries
    reference = reference_report(a, b)
    assert reference["counts"] == {"conflict": 1, "only": 2, "version": 2, "retired": 1}
    result = cli("diff", "--from", a.conninfo, "--to", b.conninfo, "--json")
    assert result.code == 1
    assert result.stdout == json.dumps(reference, indent=2, sort_keys=True) + "\n"
    back = cli("diff", "--from", b.conninfo, "--to", a.conninfo, "--json")
    assert back.code == 1
    assert back.stdout == json.dumps(reference_report(b, a), indent=2, sort_keys=True) + "\n"
    text = cli("diff", "--from", a.conninfo, "--to", b.conninfo)
    assert text.code == 1
    listed = [line.split(":")[0].split()[-1] for line in text.stdout.splitlines()[3:9]]
    assert listed == [d["slug"].replace("\t", "\\t") for d in reference["differences"]]
    same = cli("diff", "--from", a.conninfo, "--to", a.conninfo, "--json")
    assert same.code == 0
    assert same.stdout == json.dumps(reference_report(a, a), indent=2, sort_keys=True) + "\n"


def test_the_merge_pulls_each_side_only_as_far_as_it_has_compared() -> None:
    pulled = [0, 0]

    def side(n: int, step: int) -> Iterator[Movement]:
        for i in range(0, 10**9, step):
            pulled[n] += 1
            yield Movement(f"m{i:012d}", {1: "h"}, 1)

    first = list(islice(merge(side(0, 2), side(1, 3)), 100))
    assert len(first) == 100
    assert max(pulled) < 100  # a held side would have been read whole (never, here)
    with pytest.raises(RuntimeError, match="out of slug order"):
        list(merge(iter([Movement("b", {}, None), Movement("a", {}, None)]), iter(())))


def test_the_diff_asks_both_sides_for_their_first_movement_at_once() -> None:
    # each side's first movement waits for the other side's to be asked for too: asked one
    # after the other (each server sorting its library in turn), neither arrives
    both_asked = threading.Barrier(2, timeout=10)

    def side(slugs: list[str]) -> Iterator[Movement]:
        both_asked.wait()
        for slug in slugs:
            yield Movement(slug, {1: "h"}, 1)

    one, other = diff._started_together(diff.StreamedSide(side(["a", "c"]), lambda: None),
                                        diff.StreamedSide(side(["b", "c"]), lambda: None))
    assert [(h and h.slug, t and t.slug) for h, t in merge(one, other)] == [
        ("a", None), (None, "b"), ("c", "c")]


def test_a_side_that_fails_first_cancels_the_other_sides_query() -> None:
    # the other server is still sorting its library: the diff stops it instead of waiting for it
    cancelled = threading.Event()

    def sorting() -> Iterator[Movement]:
        assert cancelled.wait(10), "the other side's query was never cancelled"
        raise psycopg.errors.QueryCanceled("canceling statement due to user request")
        yield  # a generator, as a side is

    def gone() -> Iterator[Movement]:
        raise DatabaseError("the diff failed on the first side: the connection was lost")
        yield

    with pytest.raises(DatabaseError, match="connection was lost"):
        diff._started_together(diff.StreamedSide(gone(), lambda: None),
                               diff.StreamedSide(sorting(), cancelled.set))
    assert cancelled.is_set()


def test_a_stream_left_early_or_failing_leaves_the_callers_transaction_usable(
        migrated_db: Target) -> None:
    # rows are sent as the server makes them (no server-side cursor: the server may plan the
    # query in parallel); left early, the query is cancelled and only its savepoint backed out
    many = "SELECT g FROM generate_series(1, 5000000) AS g"
    with db.connect(migrated_db, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TEMPORARY TABLE kept (n integer)")
        conn.execute("INSERT INTO kept VALUES (1)")
        with db.stream(conn, many) as found:
            assert [n for (n,) in islice(found, 3)] == [1, 2, 3]
        with pytest.raises(ZeroDivisionError), db.stream(conn, many) as found:
            next(found)
            _ = 1 / 0
        with db.stream(conn, "SELECT g FROM generate_series(1, 25001) AS g") as found:
            assert sum(1 for _ in found) == 25_001  # three chunks of STREAM_ROWS, all read
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)
        conn.execute("INSERT INTO kept VALUES (2)")
    with db.connect(migrated_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                            "'%generate_series(1, 5000000)%' AND state = 'active' "
                            "AND pid <> pg_backend_pid()").fetchone() == (0,)


def test_a_report_keeps_a_few_differences_and_spills_the_rest() -> None:
    report = DriftReport("a", "b")
    count = 50_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            report.add([Difference("RETIRED", f"movement-{i:06d}", "v1", "retired (v1)")])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1 << 20, f"{held} bytes held for {count} differences"  # whole: about 20 MB
    assert len(report.first["RETIRED"]) == SHOWN and report.drifted == count
    listed = report.differences()
    assert next(listed) == Difference("RETIRED", "movement-000000", "v1", "retired (v1)")
    assert sum(1 for _ in listed) == count - 1
    assert report.lines()[-1] == f"   ... and {count - SHOWN} more retired"


# -- the dry run's JSON --------------------------------------------------------------------

def test_one_renderer_streams_the_text_it_renders_whole() -> None:
    rng = random.Random(22)
    documents: list[Any] = [{}, [], "é", None, {"b": {}, "a": [1, {"z": "x\ny", "y": []}]},
                            {"nested": {"deeper": {"k": [1.5, True]}}, "e": ""}]
    for _ in range(50):
        documents.append({f"k{rng.randrange(9)}": [rng.randrange(3) for _ in range(rng.randrange(3))]
                          for _ in range(rng.randrange(5))})
    for document in documents:
        whole = json.dumps(document, indent=2, sort_keys=True)
        assert as_json(document) == whole
        for size in (1, 7, 10_000):
            assert "\n".join(json_blocks(document, size)) == whole
    items = [{"slug": f"s{i}", "diff": [{"field": "name", "old": "a", "new": None}]} for i in range(5)]
    lazy = {"movements": iter(items), "totals": {"new": 5}, "none": iter(())}
    assert as_json(lazy) == json.dumps({**lazy, "movements": items, "none": []}, indent=2,
                                       sort_keys=True)


def test_json_blocks_pull_the_items_as_they_write_them() -> None:
    pulled = 0

    def items() -> Iterator[dict[str, int]]:
        nonlocal pulled
        for i in range(10**9):
            pulled += 1
            yield {"i": i}

    blocks = json_blocks({"movements": items()}, size=1000)
    next(blocks)
    assert pulled < 100
    chunks = json_chunks({"movements": items()})
    assert next(chunks) == '{\n  "movements": '


def _dry_json(cli: Cli, target: Target, path: Path, *more: str) -> Any:
    return cli("seed", "--dsn", target.conninfo, "--file", str(path), "--dry-run", "--format",
               "json", *more)


def test_the_dry_runs_json_is_the_whole_document_byte_for_byte(
        cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    records = json.loads(CANONICAL.read_text())
    changed = [{**records[0], "name": "Renamed é"}, *records[1:6], {**records[0], "slug": "new-one"}]
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed))
    dataset = load_movements(path, settings().schema_file)
    for flags, code in (((), 1), (("--new-versions", "--retire"), 0)):
        with db.connect(migrated_db, autocommit=True) as conn, db.work(conn, read_only=True):
            plan = make_plan(conn, dataset, new_versions=bool(flags), retire=bool(flags),
                             with_diffs=True)
        whole = {"target": migrated_db.masked(), "data_file": dataset.display_name,
                 "pending_migrations": [], **plan.as_dict()}
        result = _dry_json(cli, migrated_db, path, *flags)
        assert result.code == code, result.output
        assert result.stdout == as_json(whole) + "\n"  # one renderer, keys sorted
        # the same document the unsorted writer gave before issue 22, key order aside
        assert json.loads(result.stdout) == json.loads(json.dumps(whole, indent=2))
        kinds = {m["slug"]: (m["status"], m["action"]) for m in whole["movements"]}
        assert kinds[records[0]["slug"]] == ("changed", "publish" if flags else "blocked")
        assert kinds[records[7]["slug"]] == ("missing", "retire" if flags else "keep")


# -- a retire ------------------------------------------------------------------------------

def test_a_plan_keeps_missing_movements_compactly_and_retires_them_in_slug_order(
        migrated_db: Target, tmp_path: Path) -> None:
    count = 5_000
    path = tmp_path / "synth.json"
    write_synthetic(count, path)
    seed(migrated_db, path)
    few = tmp_path / "few.json"
    write_synthetic(3, few)  # the first three of the same movements
    dataset = load_movements(few, settings().schema_file)
    with db.connect(migrated_db, autocommit=True) as conn, conn.transaction():
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            plan = make_plan(conn, dataset, new_versions=False, retire=True)
            planned = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert plan.totals()["to_retire"] == count - 3
    # a Change object each took 193 bytes (measured before issue 22); a slug in a buffer, 70
    assert planned / count < 100, f"{planned / count:.0f} bytes a missing movement"
    lines: list[str] = []
    run_seed(settings(), migrated_db, SeedOptions(data_file=few, retire=True), lines.append)
    retired = [r[0] for r in rows(migrated_db, "SELECT slug FROM movement_audit_log "
                                               "WHERE action = 'RETIRED' ORDER BY id")]
    ordered = [r[0] for r in rows(migrated_db, "SELECT slug FROM movement_library "
                                               "WHERE version = 1 ORDER BY convert_to(slug, 'UTF8')")]
    assert retired == [s for s in ordered if s not in set(dataset.entries.slugs)]
    start = lines.index(f"seed: 0 published (0 new versions), 3 unchanged, {count - 3} retired "
                        "(seed run 2)") + 1
    assert lines[start:start + 50] == [
        f"  RETIRED   {s}" for s in sorted(retired, key=lambda s: s.encode())[:50]]
    assert rows(migrated_db, "SELECT count(*) FROM movement_current") == [(3,)]


def test_a_seed_that_keeps_many_missing_names_ten(migrated_db: Target, tmp_path: Path) -> None:
    path = tmp_path / "synth.json"
    write_synthetic(40, path)
    seed(migrated_db, path)
    few = tmp_path / "few.json"
    write_synthetic(2, few)
    lines: list[str] = []
    run_seed(settings(), migrated_db, SeedOptions(data_file=few), lines.append)
    kept = next(line for line in lines if "were kept" in line)
    assert kept.startswith("  38 current movement(s) are not in the data file and were kept")
    assert kept.endswith(" ...") and kept.count(", ") == 9


# -- the restore's preview -----------------------------------------------------------------

def test_an_external_sort_gives_every_record_back_sorted_holding_one_run() -> None:
    rng = random.Random(7)
    records = [(f"slug-{rng.randrange(10**6)}".encode(), rng.randrange(5), "h")
               for _ in range(10_000)]
    spill = SortedSpill(run_records=500)
    largest = 0
    for record in records:
        spill.add(record)
        largest = max(largest, len(spill._run))
    assert largest <= 500  # never more than a run in memory
    assert list(spill) == sorted(records)
    assert list(SortedSpill()) == []
    # a block's records at a time: runs cut where they fill, whatever the blocks' sizes
    spill, largest, at = SortedSpill(run_records=500), 0, 0
    while at < len(records):
        size = rng.choice([0, 1, 499, 500, 501, 1234])
        spill.extend(records[at:at + size])
        at += size
        largest = max(largest, len(spill._run))
    assert largest < 500 and spill.count == len(records) and len(spill._runs) == len(records) // 500
    assert list(spill) == sorted(records)


def test_the_dumps_side_is_what_dictionaries_of_it_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    """DumpLibrary.movements() against the dictionaries it used to build from the same rows."""
    from movelib.base import spill as spill_module
    from movelib.ship.dumpformat import Table

    monkeypatch.setattr(spill_module, "RUN_RECORDS", 7)  # many runs on disk
    rng = random.Random(3)
    slugs = [*SLUGS[:12], *(f"m-{i}" for i in range(30))]
    library_rows = [(s, v, f"{rng.randrange(16**8):08x}") for s in slugs for v in range(1, rng.randrange(2, 4))]
    rng.shuffle(library_rows)
    current_rows = [(s, 1) for s in slugs if rng.random() < 0.7]
    dump = DumpLibrary()
    escaped: Callable[[str], bytes] = lambda s: s.encode().replace(b"\\", b"\\\\").replace(b"\t", b"\\t")  # noqa: E731
    library = Table("movement_library", ("id", "slug", "version", "content_hash"))
    current = Table("movement_current", ("slug", "version"))
    dump.feed(library, iter([b"".join(b"1\t%s\t%d\t%s\n" % (escaped(s), v, h.encode())
                                      for s, v, h in library_rows)]))
    dump.feed(current, iter([b"".join(b"%s\t%d\n" % (escaped(s), v) for s, v in current_rows)]))
    versions: dict[str, dict[int, str]] = {}
    for s, v, h in library_rows:
        versions.setdefault(s, {})[v] = h
    whole = dict(current_rows)
    expected = [Movement(s, versions[s], whole.get(s)) for s in sorted(versions, key=str.encode)]
    assert len(dump.versions._runs) > 1 and len(dump.current._runs) > 1  # merged from disk
    assert list(dump.movements()) == expected


@pytest.mark.parametrize("seed_", range(6))
def test_the_dumps_rows_are_what_dictionaries_of_them_give(monkeypatch: pytest.MonkeyPatch,
                                                           seed_: int) -> None:
    """DumpLibrary.blocks() against rows built from dictionaries of the same tables, blocks of
    a few rows and runs on disk: slugs of one and of several versions, slugs without a pointer
    or with two, versions with no draft, two drafts or a draft that does not hash to the
    row's hash, drafts of versions the library lacks, a version twice, a dump before pointers."""
    from hashlib import sha256

    from movelib.base import spill as spill_module
    from movelib.ship import dumplibrary
    from movelib.ship.dumpformat import Table
    from movelib.source.datafile.canonical import canonical_bytes

    monkeypatch.setattr(spill_module, "RUN_RECORDS", 7)
    monkeypatch.setattr(dumplibrary, "ROWS_PER_BLOCK", 4)
    rng = random.Random(seed_)
    slugs = [*SLUGS[:12], *(f"m-{i}" for i in range(40))]
    documents = {(s, v): {"name": f"{s} {v}", "aliases": [s] * rng.randrange(3)}
                 for s in slugs for v in range(1, 4)}
    hashed = {k: sha256(canonical_bytes(d)).hexdigest() for k, d in documents.items()}
    library_rows = [(s, v, hashed[(s, v)] if rng.random() < 0.8 else f"{rng.randrange(16**8):08x}")
                    for s in slugs for v in range(1, 1 + (1 if rng.random() < 0.7 else rng.randrange(2, 4)))]
    library_rows += [row for row in library_rows if rng.random() < 0.03]  # a version twice
    drafts = [(s, v) for s, v, _ in library_rows if rng.random() < 0.9]
    drafts += [(s, v) for s, v in drafts if rng.random() < 0.05]  # a second draft
    drafts += [(s, 3) for s in slugs if rng.random() < 0.1]  # a draft the library lacks (or a third)
    current_rows = [(s, max(v for t, v, _ in library_rows if t == s)) for s in slugs if rng.random() < 0.85]
    current_rows += [(s, v + 1) for s, v in current_rows if rng.random() < 0.2]  # a second pointer
    for table in (library_rows, drafts, current_rows):
        rng.shuffle(table)
    derive = seed_ == 5
    dump = DumpLibrary(derive_current=derive)
    library = Table("movement_library", ("id", "slug", "version", "content_hash"))
    staging = Table("movement_staging", ("id", "slug", "version", "document"))
    current = Table("movement_current", ("slug", "version"))
    field = {k: orjson.dumps(d).replace(b":", b": ").replace(b",", b", ") for k, d in documents.items()}
    dump.feed(library, iter([b"".join(b"1\t%s\t%d\t%s\n" % (s.encode(), v, h.encode())
                                      for s, v, h in library_rows)]))
    dump.feed(staging, iter([b"".join(b"1\t%s\t%d\t%s\n" % (s.encode(), v, field[(s, v)])
                                      for s, v in drafts)]))
    if not derive:
        dump.feed(current, iter([b"".join(b"%s\t%d\n" % (s.encode(), v) for s, v in current_rows)]))
    pointer = dict(sorted(current_rows, key=lambda r: (r[0].encode(), r[1])))  # the last, as sorted
    expected = []
    for s, v, h in sorted(library_rows, key=lambda r: (r[0].encode(), r[1], r[2])):
        now = max(w for t, w, _ in library_rows if t == s) if derive else pointer.get(s)
        single = drafts.count((s, v)) == 1
        drafted = (sha256(field[(s, v)]).digest() if single and hashed[(s, v)] == h
                   else dumplibrary.NO_DRAFT)
        expected.append((s, v, h, drafted, now, False))
    blocks = list(dump.blocks())
    assert [row for block in blocks for row in block] == expected
    assert all(block[-1][0] != following[0][0] for block, following in pairwise(blocks))


def test_the_restores_preview_is_what_the_whole_comparison_gave(
        cli: Cli, two_libraries: tuple[Target, Target], tmp_path: Path) -> None:
    """The dump of one library previewed into the other: the lines the held-whole comparison
    gives (each kind's first few in `inv diff`'s order), the dump's side sorted on disk."""
    from movelib.ship.preview import KINDS, SHOWN, Preview, _kind

    a, b = two_libraries
    dumped = cli("dump", "--dsn", a.conninfo, "--output-dir", str(tmp_path / "dumps"))
    assert dumped.code == 0, dumped.output
    reference = reference_report(b, a)  # the target's side, then the dump's
    changes: dict[str, list[Difference]] = {}
    for d in reference["differences"]:
        found = Difference(d["kind"].upper(), d["slug"], d["from"], d["to"], d["detail"])
        changes.setdefault(_kind(found), []).append(found)
    result = cli("restore", "--dump-file", str(tmp_path / "dumps" / "movements_seed_latest.sql"),
                 "--dsn", b.conninfo, "--dry-run")
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("replaces: "))
    expected = Preview(lines[at].removeprefix("replaces: "),
                       {k: v[:SHOWN] for k, v in changes.items()},
                       (reference["movements"]["from"], reference["movements"]["to"]),
                       {k: len(changes.get(k, [])) for k in KINDS}).lines()
    assert lines[at:at + len(expected)] == expected
    assert sum(len(v) for v in changes.values()) == 6  # every kind of change is in the case


@pytest.mark.parametrize("migrated", [True, False], ids=["migrated-empty", "no-schema"])
def test_a_preview_into_a_target_without_a_library_counts_what_the_comparison_found(
        cli: Cli, two_libraries: tuple[Target, Target], migrated_db: Target, empty_db: Target,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated: bool) -> None:
    """A target that holds no library has nothing to compare: the preview counts the dump's
    movements as added and lists the first few, the lines the whole comparison gives."""
    from movelib.ship import preview as preview_module
    from movelib.ship.restore import check_dump_file

    a, _ = two_libraries
    dumped = cli("dump", "--dsn", a.conninfo, "--output-dir", str(tmp_path / "dumps"))
    assert dumped.code == 0, dumped.output
    checked = check_dump_file(tmp_path / "dumps" / "movements_seed_latest.sql")
    target = migrated_db if migrated else empty_db
    with db.connect(target, task="test", autocommit=True) as conn, db.work(conn, read_only=True):
        counted = preview_module.preview(conn, checked.library)
        monkeypatch.setattr(preview_module, "_holds_no_library", lambda _conn: False)
        compared = preview_module.preview(conn, checked.library)
    assert counted == compared
    assert counted.count("added") == len(SLUGS) and counted.movements == (0, len(SLUGS))
