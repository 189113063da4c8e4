"""A restore's comparison of the target's library with the dump's (movelib.ship.comparison).

It decides most versions from the sha256 of each draft's document as COPY writes it, and
recomputes the hash of the rest. These tests hold it to the recomputation of every hash (the
comparison it replaced, still used for a target before migration 0004): the pairs are the same
for an honest target and dump, for a target edited behind its triggers' back in each way that
matters, and for a forged dump, on a library whose documents hold what COPY and jsonb escape.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from support import CANONICAL, ROOT, database, rows, seed
from test_live_restore import forge_manifest

from movelib.base.errors import ArtifactError, RestoreFailed
from movelib.database.tables import RETIRED, action_literal
from movelib.database.target import Target, target_from_dsn
from movelib.seed.drift import Movement, merge, same
from movelib.seed.verify import BEHIND, DRAFTLESS, DRAFTLESS_STRICT, UNRETIRED, invariant
from movelib.ship import comparison
from movelib.ship.comparison import Invariants, Same, side_by_side, target_movements
from movelib.ship.dump import dump
from movelib.ship.restore import check_dump_file, plan_restore, restore
from movelib.source.datafile.canonical import canonical_bytes

Pair = tuple[Movement | None, Movement | None]

# What jsonb's text and COPY's escape: a quote, a backslash, a line break, a tab, a control
# character, and text beyond ASCII
TRICKY = {
    "back-squat": {"name": 'Back "High-Bar" Squat \\ rack'},
    "deadlift": {"instructions": ["Hinge,\tthen pull.", "Lock out;\nstand tall.", "Reset \u0007 and repeat."]},
    "bench-press": {"name": "Développé couché 🏋️", "aliases": ["Bankdrücken", "卧推"]},
}


@pytest.fixture(scope="module")
def tricky_release(pg18: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("tricky")
    movements = json.loads(CANONICAL.read_text())
    for movement in movements:
        movement.update(TRICKY.get(movement["slug"], {}))
    data = folder / "tricky.json"
    data.write_text(json.dumps(movements, ensure_ascii=False), encoding="utf-8")
    with database(pg18, "movelib_template") as name:
        source = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(source, data)
        yield dump(source, ROOT / "migrations", folder / "dump", update_latest=False).path


@pytest.fixture
def target(pg18: Any, tricky_release: Path) -> Iterator[Target]:
    with database(pg18) as name:
        held = target_from_dsn(pg18.dsn(name), "--dsn")
        restore(plan_restore(held, tricky_release))
        yield held


def both_ways(target: Target, dump_file: Path, monkeypatch: pytest.MonkeyPatch,
              ) -> tuple[Compared, Compared, list[tuple[str, int]]]:
    """What side_by_side gives, what the recomputation of every hash gives (each as the
    movements that differ, by slug, and how many movements and versions are the same), and the
    versions side_by_side recomputed."""
    library = check_dump_file(dump_file).library
    recomputed: list[tuple[str, int]] = []
    real = comparison.recompute

    def counting(conn: psycopg.Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        recomputed.extend(keys)
        return real(conn, keys)

    monkeypatch.setattr(comparison, "recompute", counting)
    with psycopg.connect(target.conninfo) as conn:
        with side_by_side(conn, library) as pairs:
            fast = compared(pairs)
        with target_movements(conn) as here:
            every = compared(merge(here, library.movements()))
    return fast, every, recomputed


Compared = tuple[list[Pair], int, int]


def compared(pairs: Iterable[Pair | Same]) -> Compared:
    differ: list[Pair] = []
    movements = versions = 0
    for pair in pairs:
        if isinstance(pair, Same):
            movements, versions = movements + pair.movements, versions + pair.versions
        elif same(*pair):
            movements, versions = movements + 1, versions + len(pair[0].versions)  # type: ignore[union-attr]
        else:
            differ.append(pair)
    return sorted(differ, key=_slug), movements, versions


def _slug(pair: Pair) -> str:
    return (pair[0] or pair[1]).slug  # type: ignore[union-attr]


def behind_the_triggers(target: Target, statement: str) -> None:
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement)


def test_an_honest_library_is_decided_without_a_recomputation(
        target: Target, tricky_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every escape of jsonb and COPY: the server's digest of each document is the dump's."""
    fast, every, recomputed = both_ways(target, tricky_release, monkeypatch)
    assert fast == every == ([], 8, 8)
    assert recomputed == []


# Edits a superuser (or an owner who disables a trigger) can make to the target's rows: each
# changes what the recomputation says of one version, or must not change it
EDITS = {  # the edit, and how many versions the comparison then recomputes
    "a key added to the document": (
        "UPDATE movement_staging SET document = document || '{\"x\": \"y\"}' WHERE slug = 'back-squat'", 1),
    "the document and its projection edited together": (
        "UPDATE movement_staging SET document = jsonb_set(document, '{name}', '\"Edited\"') "
        "WHERE slug = 'deadlift'; UPDATE movement_library SET name = 'Edited' WHERE slug = 'deadlift'", 1),
    "the projection edited": ("UPDATE movement_library SET level = 'expert' WHERE slug = 'bench-press'", 1),
    "the stored hash edited": (
        "UPDATE movement_library SET content_hash = repeat('0', 64) WHERE slug = 'back-squat'", 1),
    # neither comparison reads a draft's stored hash (the verification compares it with its row's)
    "the draft's stored hash edited": (
        "UPDATE movement_staging SET content_hash = repeat('0', 64) WHERE slug = 'back-squat'", 0),
    "the document emptied": ("UPDATE movement_staging SET document = '{}' WHERE slug = 'deadlift'", 1),
    "two rows' drafts swapped": (
        "UPDATE movement_library SET staging_id = -staging_id WHERE slug IN ('back-squat', 'deadlift'); "
        "UPDATE movement_library l SET staging_id = s.id FROM movement_staging s "
        "WHERE s.slug = CASE l.slug WHEN 'back-squat' THEN 'deadlift' ELSE 'back-squat' END "
        "AND l.slug IN ('back-squat', 'deadlift')", 2),
    "a draft's document set to another's": (
        "UPDATE movement_staging s SET document = o.document FROM movement_staging o "
        "WHERE s.slug = 'back-squat' AND o.slug = 'deadlift'", 1),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_target_edited_behind_its_triggers_compares_as_the_recomputation_says(
        target: Target, tricky_release: Path, monkeypatch: pytest.MonkeyPatch, edit: str) -> None:
    statement, versions = EDITS[edit]
    behind_the_triggers(target, statement)
    fast, every, recomputed = both_ways(target, tricky_release, monkeypatch)
    assert fast == every
    assert len(recomputed) == versions  # the edited versions only


def _forged(release: Path, folder: Path, table: str, edit: Callable[[list[bytes], list[bytes]], None],
            ) -> Path:
    """A copy of ``release`` whose ``table`` rows ``edit(columns, fields)`` changed, its
    manifest made the copy's as a forger would (no library digest)."""
    forged = folder / release.name
    shutil.copy(release, forged)
    shutil.copy(release.with_name(release.name.removesuffix(".sql") + ".manifest.json"), folder)
    lines = forged.read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f'COPY "{table}"'.encode()))
    columns = lines[start].split(b"(", 1)[1].split(b")", 1)[0].replace(b'"', b"").split(b", ")
    end = lines.index(b"\\.", start)
    out = lines[:start + 1]
    for line in lines[start + 1:end]:
        fields = line.split(b"\t")
        edit(columns, fields)
        out.append(b"\t".join(fields))
    forged.write_bytes(b"\n".join(out + lines[end:]))
    forge_manifest(forged, drop=("library_sha256",))
    return forged


def _on(slug: bytes, column: bytes, change: Callable[[bytes], bytes]) -> Callable[[list[bytes], list[bytes]], None]:
    def edit(columns: list[bytes], fields: list[bytes]) -> None:
        if fields[columns.index(b"slug")] == slug:
            at = columns.index(column)
            fields[at] = change(fields[at])
    return edit


# A forged dump: what its drafts or library rows say, changed
FORGERIES = {
    # the same document, spelt with an escape jsonb never prints: not its bytes, the same content
    "a document escaped otherwise": ("movement_staging", _on(b"bench-press", b"document",
                                     lambda d: d.replace("é".encode(), b"\\\\u00e9"))),
    "a key added to a draft's document": ("movement_staging", _on(b"back-squat", b"document",
                                          lambda d: d[:-1] + b', "x": "y"}')),
    "a library row's hash": ("movement_library", _on(b"deadlift", b"content_hash", lambda h: b"0" * 64)),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_dump_compares_as_the_recomputation_says(
        target: Target, tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        forgery: str) -> None:
    table, edit = FORGERIES[forgery]
    forged = _forged(tricky_release, tmp_path, table, edit)
    fast, every, recomputed = both_ways(target, forged, monkeypatch)
    assert fast == every
    assert len(recomputed) == 1


def test_a_version_with_two_drafts_in_the_dump_is_recomputed(
        target: Target, tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = tmp_path / tricky_release.name
    shutil.copy(tricky_release, forged)
    shutil.copy(tricky_release.with_name(tricky_release.name.removesuffix(".sql") + ".manifest.json"),
                tmp_path)
    lines = forged.read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b'COPY "movement_staging"'))
    twice = next(i for i in range(start + 1, len(lines)) if b"\tback-squat\t" in lines[i])
    lines.insert(twice + 1, lines[twice])
    forged.write_bytes(b"\n".join(lines))
    manifest = json.loads(forged.with_name(forged.name.removesuffix(".sql") + ".manifest.json").read_text())
    manifest["row_counts"]["movement_staging"] += 1
    forged.with_name(forged.name.removesuffix(".sql") + ".manifest.json").write_text(json.dumps(manifest))
    forge_manifest(forged, drop=("library_sha256",))
    fast, every, recomputed = both_ways(target, forged, monkeypatch)
    assert fast == every
    assert recomputed == [("back-squat", 1)]


def test_a_restore_over_an_edited_document_replaces_the_version(
        target: Target, tricky_release: Path) -> None:
    """End to end: a document given a key behind the triggers' back (the projection still
    holds, every stored hash unchanged) is not the release's content; the restore replaces it."""
    behind_the_triggers(target, EDITS["a key added to the document"][0])
    result = restore(plan_restore(target, tricky_release))
    assert result.merged is not None and result.merged.as_dict()["removed"] == 1
    assert rows(target, "SELECT count(*) FROM movement_staging WHERE document ? 'x'") == [(0,)]


def test_versions_recomputed_a_few_queries_at_a_time_compare_the_same(
        target: Target, tricky_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many movements that differ (a release far from the target) are recomputed in queries of
    RECOMPUTED_PER_QUERY versions; one version a query here."""
    monkeypatch.setattr(comparison, "RECOMPUTED_PER_QUERY", 1)
    behind_the_triggers(target, "UPDATE movement_library SET content_hash = repeat('0', 64)")
    fast, every, recomputed = both_ways(target, tricky_release, monkeypatch)
    assert fast == every
    assert sorted(recomputed) == sorted((slug, 1) for slug, in rows(target, "SELECT slug FROM movement_library"))


def test_a_dump_of_an_edited_database_restored_into_it_compares_as_the_recomputation_says(
        target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A draft and its row edited together behind the triggers (the stored hashes kept), then
    the database dumped: the dump holds the edited document under the reviewed hash, and the
    target holds it too. Recomputed, the version is not the dump's hash; the document digests
    alone would call it the same. The dump's draft is held to its row's hash first."""
    statement, _ = EDITS["the document and its projection edited together"]
    behind_the_triggers(target, statement)
    edited = dump(target, ROOT / "migrations", tmp_path, update_latest=False).path
    fast, every, recomputed = both_ways(target, edited, monkeypatch)
    assert fast == every
    assert [ours.slug for ours, _ in fast[0]] == ["deadlift"]  # type: ignore[union-attr]
    assert recomputed == [("deadlift", 1)]
    with pytest.raises(RestoreFailed):  # the dump's draft is refused by the database
        restore(plan_restore(target, edited))


# Documents whose canonical form Python and SQL write otherwise: a number is written by SQL as
# jsonb keeps it (1.50), by Python as it parses it (1.5). The dump's draft is hashed in Python
# only when it is a movement's shape (strings and lists of strings)
OTHER_SHAPES = {"a number": '{"x": 1.50}', "a number in a list": '{"x": ["y", 1.50]}'}


@pytest.mark.parametrize("shape", OTHER_SHAPES)
def test_a_draft_hashed_by_pythons_canonical_form_only_is_recomputed(
        target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """A draft given a value of another shape behind the triggers, its row's hash set to the
    sha256 of Python's canonical form of it, the database dumped and compared with itself: the
    recomputation (SQL's form) says the version is not its hash, and so does the comparison."""
    behind_the_triggers(target, f"UPDATE movement_staging SET document = document || '{OTHER_SHAPES[shape]}' "
                                "WHERE slug = 'deadlift'")
    [(text,)] = rows(target, "SELECT document::text FROM movement_staging WHERE slug = 'deadlift'")
    python = hashlib.sha256(canonical_bytes(orjson.loads(text))).hexdigest()
    behind_the_triggers(target, f"UPDATE movement_library SET content_hash = '{python}' WHERE slug = 'deadlift'")
    edited = dump(target, ROOT / "migrations", tmp_path, update_latest=False).path
    fast, every, recomputed = both_ways(target, edited, monkeypatch)
    assert fast == every
    assert [ours.slug for ours, _ in fast[0]] == ["deadlift"]  # type: ignore[union-attr]
    assert recomputed == [("deadlift", 1)]


def test_blocks_of_two_rows_compare_as_the_recomputation_says(
        target: Target, tricky_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dump's rows taken two at a time: blocks equal to the target's next rows counted,
    the others (a movement the target lacks a pointer for, one edited, one only the target
    holds, one only the dump holds) compared slug by slug, the two kinds side by side."""
    from movelib.ship import dumplibrary

    monkeypatch.setattr(dumplibrary, "ROWS_PER_BLOCK", 2)
    behind_the_triggers(target, "DELETE FROM movement_current WHERE slug = 'deadlift'; "
                                "UPDATE movement_library SET level = 'expert' WHERE slug = 'bench-press'; "
                                "UPDATE movement_library SET slug = 'aa-only-here' WHERE slug = 'back-squat'; "
                                "UPDATE movement_current SET slug = 'aa-only-here' WHERE slug = 'back-squat'")
    fast, every, recomputed = both_ways(target, tricky_release, monkeypatch)
    assert fast == every
    assert [_slug(pair) for pair in fast[0]] == ["aa-only-here", "back-squat", "bench-press", "deadlift"]
    assert fast[1:] == (5, 5)  # the other five, counted
    assert sorted(recomputed) == [("aa-only-here", 1), ("bench-press", 1)]  # deadlift's is decided


# Edits that break, or keep, the three invariants of the library the comparison checks for the
# merge's first half (verify's DRAFTLESS strictly, BEHIND, UNRETIRED)
INVARIANT_EDITS = {
    "nothing": "",
    "a draft not published": "UPDATE movement_staging SET status = 'approved' WHERE slug = 'deadlift'",
    "two rows' drafts swapped": EDITS["two rows' drafts swapped"][0],
    "a pointer behind": "UPDATE movement_current SET version = 7 WHERE slug = 'deadlift'",
    "a pointer removed": "DELETE FROM movement_current WHERE slug = 'deadlift'",
    "a pointer removed, its RETIRED row written": (
        "DELETE FROM movement_current WHERE slug = 'deadlift'; "
        "INSERT INTO movement_audit_log (action, slug, version, actor, details) "
        f"VALUES ({action_literal(RETIRED)}, 'deadlift', 1, 'x', '{{}}')"),
}


@pytest.mark.parametrize("against", ["the release", "a dump of the edited target"])
@pytest.mark.parametrize("rows_per_block", [2, 1000])
@pytest.mark.parametrize("edit", INVARIANT_EDITS)
def test_the_comparison_finds_what_the_librarys_check_finds(
        target: Target, tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        edit: str, rows_per_block: int, against: str) -> None:
    """What the comparison says of three of the library's invariants is what verify's queries
    say, the rows taken in blocks equal to the target's (against a dump of the edited target)
    or compared slug by slug."""
    from movelib.ship import dumplibrary

    monkeypatch.setattr(dumplibrary, "ROWS_PER_BLOCK", rows_per_block)
    if INVARIANT_EDITS[edit]:
        behind_the_triggers(target, INVARIANT_EDITS[edit])
    release = (tricky_release if against == "the release"
               else dump(target, ROOT / "migrations", tmp_path, update_latest=False).path)
    found = Invariants()
    with psycopg.connect(target.conninfo) as conn:
        with side_by_side(conn, check_dump_file(release).library, found) as pairs:
            deque(pairs, maxlen=0)
        expected = any(conn.execute(invariant(query, "", strict)).fetchone() for query, strict in (
            (DRAFTLESS, DRAFTLESS_STRICT), (BEHIND, ""), (UNRETIRED, "")))
    assert found.checked
    assert found.broken == expected == (edit not in ("nothing", "a pointer removed, its RETIRED row written"))


def test_the_first_half_checks_the_retired_slugs_the_comparison_left(target: Target) -> None:
    """More slugs without a pointer than the comparison looks up: the first half of the
    merge's check reads their RETIRED rows itself."""
    from movelib.ship.merge_check import half

    behind_the_triggers(target, INVARIANT_EDITS["a pointer removed"])
    with psycopg.connect(target.conninfo) as conn:
        assert not half(conn, None, Invariants(checked=True, unpointed=None)).clean
        assert half(conn, None, Invariants(checked=True)).clean  # the comparison's word taken


# The drafts of a large dump hashed in a second process (movelib.ship.drafts)
HOW = {
    "a second process": None,
    "no interpreter to start": "/nonexistent/python",  # Popen raises: this process hashes them
    "a second process that fails": shutil.which("false"),  # exits 1: this process hashes them
}


def _hashed_by(monkeypatch: pytest.MonkeyPatch, executable: str | None) -> list[Any]:
    """Every dump checked from here has its drafts hashed by a helper (started with
    ``executable`` when given); the helpers' processes, as they ended, are listed."""
    import sys

    from movelib.ship import drafts
    from movelib.ship import restore as restore_module

    monkeypatch.setattr(restore_module, "HELPER_DRAFTS", 0)
    if executable is not None:
        monkeypatch.setattr(sys, "executable", executable)
    ended: list[Any] = []
    real = drafts.Helper.results

    def results(self: drafts.Helper, size: int, digest: bytes) -> Iterator[list[Any]]:
        yield from real(self, size, digest)
        ended.append(self._process)

    monkeypatch.setattr(drafts.Helper, "results", results)
    return ended


def _compressed(release: Path, folder: Path) -> Path:
    """``release`` as ``inv release`` ships it: .sql.gz, its manifest recording both forms."""
    import dataclasses

    from movelib.ship.compress import compress
    from movelib.ship.manifest import manifest_path, read_manifest

    sql = folder / release.name
    shutil.copy(release, sql)
    _, manifest = read_manifest(release)
    shipped = compress(sql)
    manifest_path(sql).write_bytes(dataclasses.replace(manifest, compressed=shipped).to_json().encode())
    sql.unlink()
    return folder / str(shipped["file"])


@pytest.mark.parametrize("compressed", [False, True], ids=["sql", "sql.gz"])
@pytest.mark.parametrize("how", HOW)
def test_a_large_dumps_drafts_hashed_by_a_helper_are_this_processes(
        tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str,
        compressed: bool) -> None:
    """The drafts' digests and content hashes a helper gives (drafts whose documents hold what
    COPY and jsonb escape, slugs beyond ASCII) are those this process computes as it reads the
    table: from a second process, or, where none starts or it fails, from this process reading
    the table again. A .sql.gz is inflated by the helper as the check inflates it."""
    release = _compressed(tricky_release, tmp_path) if compressed else tricky_release
    here = list(check_dump_file(release).library.documents)
    ended = _hashed_by(monkeypatch, HOW[how])
    helped = list(check_dump_file(release).library.documents)
    assert helped == here and len(here) == json.loads(
        tricky_release.with_name(tricky_release.name.removesuffix(".sql") + ".manifest.json")
        .read_text())["row_counts"]["movement_staging"]
    assert any(document != "" for *_, document in here)  # content hashes computed, not blank
    [process] = ended
    if how == "no interpreter to start":
        assert process is None
    else:
        assert process is not None and process.returncode == (0 if how == "a second process" else 1)


@pytest.mark.parametrize("how", ["a second process", "no interpreter to start"])
def test_drafts_changed_while_the_helper_reads_them_are_refused(
        tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The dump changed in place (a document's bytes, its size as it was) only while the helper
    reads its drafts' table, then put back: the file is its manifest's again when the check
    ends, but the helper hashed other bytes than the check read, and the dump is refused,
    whichever process hashed them."""
    import contextlib

    from movelib.ship import drafts

    dump_file = tmp_path / tricky_release.name
    shutil.copy(tricky_release, dump_file)
    shutil.copy(tricky_release.with_name(tricky_release.name.removesuffix(".sql") + ".manifest.json"),
                tmp_path)
    original = dump_file.read_bytes()  # the check holds the whole (small) file before its drafts
    edited = original.replace(b"High-Bar", b"Low--Bar", 1)  # the first: a draft's document
    assert edited != original and len(edited) == len(original)

    @contextlib.contextmanager
    def swapped() -> Iterator[None]:
        dump_file.write_bytes(edited)
        try:
            yield
        finally:
            dump_file.write_bytes(original)

    _hashed_by(monkeypatch, HOW[how])
    start, read_table = drafts.Helper.start, drafts.read_table

    def started(self: drafts.Helper, at: int, columns: drafts.Columns) -> None:
        with swapped():
            start(self, at, columns)
            if self._process is not None:
                self._process.wait()

    def read(*args: Any) -> None:
        with swapped():
            read_table(*args)

    monkeypatch.setattr(drafts.Helper, "start", started)
    monkeypatch.setattr(drafts, "read_table", read)
    with pytest.raises(ArtifactError, match=re.escape("changed while it was read (its drafts are "
                                                      "not the bytes its check read)")):
        check_dump_file(dump_file)
    assert dump_file.read_bytes() == original


@pytest.mark.posix  # the stand-in interpreter is a shell script
def test_the_helper_is_stopped_and_its_files_removed_when_the_check_refuses(
        tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump refused after its drafts' table (a library row with a field too many): the
    helper's process has ended and its folder is gone when the refusal reaches the caller."""
    import sys
    import time

    from movelib.ship import drafts

    forged = _forged(tricky_release, tmp_path, "movement_library",
                     _on(b"deadlift", b"content_hash", lambda h: h + b"\textra"))
    slow = tmp_path / "slow-python"  # the helper still starting when the check refuses
    slow.write_text(f"#!/bin/sh\nsleep 5\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    _hashed_by(monkeypatch, str(slow))
    helpers: list[drafts.Helper] = []
    real = drafts.Helper.start

    def start(self: drafts.Helper, at: int, columns: drafts.Columns) -> None:
        helpers.append(self)
        real(self, at, columns)

    monkeypatch.setattr(drafts.Helper, "start", start)
    began = time.monotonic()
    with pytest.raises(ArtifactError, match="field"):
        check_dump_file(forged)
    assert time.monotonic() - began < 4  # not waited for
    [helper] = helpers
    assert helper._process is not None and helper._process.returncode == -9  # SIGKILL
    assert not Path(helper._where.name).exists()


@pytest.mark.parametrize("how", ["as the check reads", "a second process",
                                 "this process again, a block at a time"])
def test_a_drafts_version_that_is_not_a_number_is_refused_with_its_line(
        tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The drafts' sixth row's version "01": refused with that row's line and slug, whether
    this process hashed the drafts as it read them, a helper process did, or this process
    read the table again in blocks of a few rows (the lines counted across blocks)."""
    from movelib.ship import drafts

    forged = tmp_path / tricky_release.name
    shutil.copy(tricky_release, forged)
    shutil.copy(tricky_release.with_name(tricky_release.name.removesuffix(".sql") + ".manifest.json"),
                tmp_path)
    lines = forged.read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b'COPY "movement_staging"')) + 6
    fields = lines[at].split(b"\t")
    fields[2] = b"01"  # (id, slug, version, ...)
    lines[at] = b"\t".join(fields)
    forged.write_bytes(b"\n".join(lines))
    forge_manifest(forged, drop=("library_sha256",))
    if how != "as the check reads":
        _hashed_by(monkeypatch, None if how == "a second process" else HOW["no interpreter to start"])
        monkeypatch.setattr(drafts, "_READ", 2048)  # rows of about 1 KB: a few a block
    with pytest.raises(ArtifactError, match=re.escape(f"line {at + 1}: a row of movement_staging (slug "
                                                      f"'{fields[1].decode()}') has the version '01'")):
        check_dump_file(forged)


def test_the_helper_imports_nothing_from_where_the_restore_is_run(
        tricky_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module planted in the current folder (an orjson.py in an unpacked release, say) is
    not what the helper process imports: it imports from where this process does."""
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "imported"
    (planted / "orjson.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    monkeypatch.chdir(planted)
    monkeypatch.syspath_prepend("")  # as `python -m pytest` and `python -c` have it
    ended = _hashed_by(monkeypatch, None)
    assert list(check_dump_file(tricky_release).library.documents)
    [process] = ended
    assert process is not None and process.returncode == 0
    assert not marker.exists()


def test_an_empty_drafts_table_read_by_a_helper(migrated_db: Target, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump of a library without a draft: the helper (a second process, or this process
    in small reads) finds the table's end-of-data line at once, and the check passes."""
    from movelib.ship import drafts

    empty = dump(migrated_db, ROOT / "migrations", tmp_path / "dump", update_latest=False).path
    for how in ("a second process", "no interpreter to start"):
        ended = _hashed_by(monkeypatch, HOW[how])
        monkeypatch.setattr(drafts, "_READ", 7)
        assert list(check_dump_file(empty).library.documents) == []
        assert len(ended) == 1


def test_drafts_without_the_size_and_sha256_of_what_was_read_are_refused(
        tricky_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper's output must end with the size and sha256 of the bytes it read: drafts
    that come without them vouch for nothing, and the dump is refused."""
    import io

    from movelib.base.spill import dump_block, load_blocks
    from movelib.ship import drafts

    _hashed_by(monkeypatch, HOW["no interpreter to start"])
    read_table = drafts.read_table

    def without_the_end(path: Path, compressed: Any, start: int, columns: drafts.Columns,
                        out: Any) -> None:
        whole = io.BytesIO()
        read_table(path, compressed, start, columns, whole)
        whole.seek(0)
        for block in load_blocks(whole):
            if isinstance(block, list):
                dump_block(block, out)

    monkeypatch.setattr(drafts, "read_table", without_the_end)
    with pytest.raises(ArtifactError, match=re.escape("its drafts are not the bytes its check read")):
        check_dump_file(tricky_release)
