"""`inv diff`: two libraries compared movement by movement, read only on both sides."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    CANONICAL,
    SENTINEL_PASSWORD,
    TEST_USER,
    Cli,
    Server,
    assert_no_secret,
    database,
    seed,
    table_hashes,
)

from movelib.database.target import Target, target_from_dsn
from movelib.seed.drift import Side, compare

DATA: list[dict[str, Any]] = json.loads(CANONICAL.read_text())
CONFLICT, VERSION, RETIRED, ONLY = (DATA[i]["slug"] for i in (0, 1, 2, 7))


def edited(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "name": record["name"] + " (edited)"}


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def canonical(pg18: Server) -> Iterator[Target]:
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(target)
        yield target


@pytest.fixture
def drifted(pg18: Server, tmp_path: Path) -> Iterator[Target]:
    """One drift of each kind against the canonical library: the first movement published as
    v1 with other content (a conflict), the second at v2, the third retired, the last absent."""
    first = [edited(DATA[0]), *DATA[1:7]]
    second = [first[0], edited(DATA[1]), *DATA[3:7]]
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(target, write(tmp_path / "first.json", first))
        seed(target, write(tmp_path / "second.json", second), new_versions=True, retire=True)
        yield target


def test_two_equal_libraries_exit_0(cli: Cli, canonical: Target, pg18: Server) -> None:
    with database(pg18, "movelib_template") as name:
        other = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(other)
        result = cli("diff", "--from", canonical.conninfo, "--to", other.conninfo)
    assert result.code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "diff: equal (every movement at the same version with the same content)")
    assert_no_secret(result.output)


def test_each_kind_of_drift_is_listed_and_a_conflict_loudly(cli: Cli, canonical: Target, drifted: Target) -> None:
    before = table_hashes(canonical), table_hashes(drifted)
    result = cli("diff", "--from", canonical.conninfo, "--to", drifted.conninfo)
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("from: postgresql://movelib_test:***@127.0.0.1:")
    assert lines[0].endswith("(8 movements)") and lines[1].endswith("(7 movements)")
    assert lines[2] == "diff: DRIFT in 4 movement(s): 1 conflict, 1 only, 1 version, 1 retired"
    assert lines[3].startswith(f"!! CONFLICT {CONFLICT}: v1 -> v1; different content in v1 (")
    assert lines[4:7] == [f"   ONLY     {ONLY}: v1 -> absent",
                          f"   VERSION  {VERSION}: v1 -> v2",
                          f"   RETIRED  {RETIRED}: v1 -> retired (v1)"]
    assert lines[7].startswith("!! a published version is immutable")
    assert result.stderr.strip().endswith("4 movement(s) differ, 1 CONFLICT(s)")
    assert "Traceback" not in result.output
    assert_no_secret(result.output)
    assert (table_hashes(canonical), table_hashes(drifted)) == before, "the diff wrote something"


def test_json_lists_every_difference(cli: Cli, canonical: Target, drifted: Target) -> None:
    result = cli("diff", "--from", drifted.conninfo, "--to", canonical.conninfo, "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["equal"] is False
    assert report["from"] == drifted.masked() and report["to"] == canonical.masked()
    assert report["movements"] == {"from": 7, "to": 8}
    assert report["counts"] == {"conflict": 1, "only": 1, "version": 1, "retired": 1}
    assert {d["slug"]: (d["kind"], d["from"], d["to"]) for d in report["differences"]} == {
        CONFLICT: ("conflict", "v1", "v1"), ONLY: ("only", "absent", "v1"),
        VERSION: ("version", "v2", "v1"), RETIRED: ("retired", "retired (v1)", "v1")}
    assert_no_secret(result.output)


def test_a_profile_side_and_a_dsn_side(cli: Cli, canonical: Target, drifted: Target, pg18: Server) -> None:
    staging = {"INVOKE_PROFILES_STAGING_PORT": str(pg18.port), "INVOKE_PROFILES_STAGING_USER": TEST_USER,
               "INVOKE_PROFILES_STAGING_PASSWORD": SENTINEL_PASSWORD,
               "INVOKE_PROFILES_STAGING_DATABASE": drifted.dbname}
    result = cli("diff", "--from", "staging", "--to", canonical.conninfo, env=staging)
    assert result.code == 1, result.output
    assert f"/{drifted.dbname} (7 movements)" in result.stdout.splitlines()[0]
    assert_no_secret(result.output)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(("--to", "staging"), "give --from: a profile name or a PostgreSQL URL", id="no-from"),
        pytest.param(("--from", "nowhere", "--to", "staging"), "nowhere", id="an-unknown-profile"),
    ],
)
def test_refusals_are_one_line(cli: Cli, args: tuple[str, ...], says: str) -> None:
    result = cli("diff", *args)
    assert result.code == 2
    assert says in result.stderr and "Traceback" not in result.output


def test_a_side_without_the_schema_says_so(cli: Cli, canonical: Target, empty_db: Target) -> None:
    result = cli("diff", "--from", canonical.conninfo, "--to", empty_db.conninfo)
    assert result.code == 2
    assert "the schema is not applied" in result.stderr
    assert_no_secret(result.output)


def test_the_comparison_scales_as_one_pass_over_hashes() -> None:
    """100k movements a side compare in well under a second (the measured number is in the
    report: reading each side is one JSON document)."""
    import time

    versions = {f"m-{i:06d}": {1: f"{i:064x}"} for i in range(100_000)}
    current = {slug: 1 for slug in versions}
    other = {**versions, "m-000007": {1: "f" * 64}}
    started = time.perf_counter()
    found = compare(Side("a", versions, current), Side("b", other, current))
    assert time.perf_counter() - started < 2
    assert [(d.kind, d.slug) for d in found] == [("CONFLICT", "m-000007")]


def test_each_side_is_read_in_a_read_only_transaction(canonical: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the diff's query to write, the server would refuse it: the read is READ ONLY."""
    from movelib.base.errors import DatabaseError
    from movelib.seed import diff, drift

    monkeypatch.setattr(drift, "_LIBRARY", "SELECT 'x', 1, 'h', nextval(pg_get_serial_sequence("
                                           "'movement_library', 'id'))")
    with pytest.raises(DatabaseError, match=r"cannot execute nextval\(\) in a read-only transaction"), \
            diff.read_side(canonical) as found:
        list(found)
    assert table_hashes(canonical)["movement_library"].startswith("8:")
