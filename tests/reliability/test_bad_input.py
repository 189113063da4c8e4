"""Bad input never reaches the database; unusual but valid text is stored verbatim."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT, SENTINEL_PASSWORD, TEST_USER, Cli, ConnectionCounter, Server, table_hashes
from support import settings as project_settings

from movelib.base.errors import DataFileError
from movelib.database.emulator.base import query_server_version
from movelib.database.profiles import Profile
from movelib.database.target import Target
from movelib.seed.workflow import SeedOptions, run_seed
from movelib.source.datafile import check_document, load_movements

SCHEMA = ROOT / "schemas" / "movement.schema.json"
SETTINGS = project_settings()
CANONICAL: list[dict[str, Any]] = json.loads((ROOT / "data" / "movements-canonical.json").read_text())


def records(edit: Callable[[list[dict[str, Any]]], Any]) -> str:
    data = json.loads(json.dumps(CANONICAL))
    result = edit(data)
    return json.dumps(data if result is None else result, ensure_ascii=False)


def setting(index: int, key: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def edit(data: list[dict[str, Any]]) -> None:
        data[index][key] = value
    return edit


def dropping(index: int, key: str) -> Callable[[list[dict[str, Any]]], None]:
    def edit(data: list[dict[str, Any]]) -> None:
        del data[index][key]
    return edit


VALID = json.dumps(CANONICAL)
# (id, file content, text the report must contain)
CASES: list[tuple[str, str | bytes, str]] = [
    ("syntax-missing-comma", VALID.replace('"name": "Deadlift"', '"name": "Deadlift" "x": 1'), "JSON syntax error"),
    ("syntax-trailing-comma", VALID[:-1] + ",]", "JSON syntax error"),
    ("syntax-unclosed-array", VALID[:-1], "the file ends before the closing ']' of the array of movements"),
    ("syntax-unclosed-string", '[{"slug": "a]', "the file ends inside the string that starts here (line 1, column 11)"),
    ("syntax-single-quotes", "[{'slug': 'a'}]", "JSON syntax error"),
    ("syntax-comment", "// movements\n" + VALID, "JSON syntax error"),
    ("syntax-trailing-garbage", VALID + " extra", "JSON syntax error"),
    ("two-documents", VALID + VALID, "JSON syntax error"),
    ("empty-file", "", "the file is empty"),
    ("whitespace-only", "   \n\t  ", "the file is empty"),
    ("bom", b"\xef\xbb\xbf" + VALID.encode(), "byte order mark"),
    ("invalid-utf8", VALID.encode().replace(b"Deadlift", b"Deadl\xffft"), "not valid UTF-8"),
    ("utf16", VALID.encode("utf-16"), "not valid UTF-8"),
    ("object-not-array", json.dumps({"movements": CANONICAL}), "at /: expected array"),
    ("null-document", "null", "at /: expected array"),
    ("array-of-strings", '["back-squat"]', "record 0 at /0: expected object"),
    ("nan", VALID.replace('"level": "beginner"', '"level": NaN', 1), "NaN is not valid JSON"),
    ("infinity", VALID.replace('"level": "beginner"', '"level": Infinity', 1), "Infinity is not valid JSON"),
    ("duplicate-json-key", VALID.replace('"name": "Deadlift"', '"name": "Deadlift", "name": "Dead Lift"'), "duplicate key 'name'"),
    ("duplicate-slug", records(setting(3, "slug", "back-squat")), "duplicate slug 'back-squat'"),
    ("missing-slug", records(dropping(2, "slug")), "'slug' is a required property"),
    ("missing-name", records(dropping(2, "name")), "'name' is a required property"),
    ("missing-instructions", records(dropping(5, "instructions")), "'instructions' is a required property"),
    ("unknown-field", records(setting(1, "weight_kg", 100)), "'weight_kg' was unexpected"),
    ("wrong-type-name", records(setting(0, "name", 42)), "at /0/name: expected string"),
    ("wrong-type-equipment", records(setting(0, "equipment", "barbell")), "at /0/equipment: expected array"),
    ("wrong-type-muscle-item", records(setting(0, "primary_muscles", [1])), "at /0/primary_muscles/0"),
    ("null-level", records(setting(0, "level", None)), "at /0/level"),
    ("bool-slug", records(setting(0, "slug", True)), "at /0/slug: expected string"),
    ("unknown-classification", records(setting(0, "classification", "squatish")), "is not one of"),
    ("unknown-equipment", records(setting(0, "equipment", ["hoverboard"])), "at /0/equipment/0"),
    ("empty-primary-muscles", records(setting(0, "primary_muscles", [])), "at /0/primary_muscles"),
    ("repeated-equipment", records(setting(0, "equipment", ["barbell", "barbell"])), "at /0/equipment"),
    ("blank-name", records(setting(0, "name", "   ")), "at /0/name"),
    ("nul-in-a-name", records(setting(0, "name", "Back\u0000Squat")), "at /0/name: holds \\u0000 (NUL)"),
    ("sql-in-slug", records(setting(0, "slug", "x'); DROP TABLE movement_library; --")), "at /0/slug"),
    ("shell-in-slug", records(setting(0, "slug", "$(rm -rf /)`reboot`")), "at /0/slug"),
    ("uppercase-slug", records(setting(0, "slug", "Back-Squat")), "at /0/slug"),
    ("long-slug", records(setting(0, "slug", "a" * 81)), "at /0/slug"),
    ("long-name", records(setting(0, "name", "N" * 121)), "at /0/name"),
    ("long-instruction", records(setting(0, "instructions", ["x" * 2001])), "at /0/instructions/0"),
    ("too-many-instructions", records(setting(0, "instructions", ["step"] * 51)), "at /0/instructions"),
    ("nested-object", records(setting(0, "aliases", [{"name": "x"}])), "at /0/aliases/0"),
    ("deep-nesting", "[" * 10_000 + "]" * 10_000, "nested too deeply"),
    ("deep-object-nesting", '[{"a":' * 10_000 + "1" + "}" * 10_000 + "]", "nested too deeply"),
]


def test_there_are_at_least_forty_bad_inputs() -> None:
    assert len(CASES) + 2 >= 40  # plus the two 50 MB files below


@pytest.mark.parametrize(("content", "expected"), [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_bad_input_is_refused_before_any_connection(cli: Cli, listener: ConnectionCounter, tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "bad-movements.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = listener.count
    result = cli("seed", "--dsn", f"postgresql://u:unused-pw@127.0.0.1:{listener.port}/db", "--file", str(path))
    assert result.code == 1, result.output
    assert "bad-movements.json" in result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert listener.count == before, "a connection was opened for bad input"


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["syntax-at-the-end", "bad-record-at-the-end"])
def test_a_fifty_megabyte_file_with_one_fault(cli: Cli, listener: ConnectionCounter, tmp_path: Path, fault: str) -> None:
    from movelib.source.synth import write_synthetic

    path = tmp_path / "huge.json"
    write_synthetic(85_000, path)
    data = path.read_bytes()
    assert len(data) > 50_000_000
    if fault == "syntax-at-the-end":
        data = data.rstrip()[:-1] + b",]"
        expected = "JSON syntax error"
    else:
        data = data.replace(b'"level": "beginner"}\n]', b'"level": "expert"}\n]')
        last = data.rfind(b'"level": "')
        data = data[:last] + b'"level": "grandmaster", ' + data[last:]
        expected = "record 84999"
    path.write_bytes(data)
    result = cli("seed", "--dsn", f"postgresql://u:unused-pw@127.0.0.1:{listener.port}/db", "--file", str(path))
    assert result.code == 1 and expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.output and listener.count == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["slug", "name", "classification", "equipment", "primary_muscles", "secondary_muscles",
          "level", "instructions", "aliases", "laterality", "force", "mechanic", "coaching_cues", "extra"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 7), field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_fast_and_reference_validators_agree(tmp_path: Path, index: int, field: str, value: Any) -> None:
    data = json.loads(json.dumps(CANONICAL))
    data[index][field] = value
    path = tmp_path / "prop.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    reference = check_document(data, "prop.json", SCHEMA)
    try:
        dataset = load_movements(path, SCHEMA, display_name="prop.json")
    except DataFileError as exc:
        assert reference, f"fast path refused what the reference accepts: {exc}"
        assert str(exc).startswith("prop.json: record ")
        assert f" at /{index}" in str(exc)
    else:
        assert not reference, f"accepted what the reference refuses: {reference}"
        assert len(dataset) == 8


UNUSUAL = ["O'Brien's \"Quoted\" Squat", "x'); DROP TABLE movement_library; --", "Squat 🏋️‍♀️ 💪",
           "قرفصاء خلفية", "סקוואט אחורי", "Back\\Slash \t Tab\r\nNew line \u0007 bell \"quoted\"", "日本語のスクワット", "%s %(x)s {} $1"]


def test_unusual_valid_text_is_stored_and_read_back_verbatim(migrated_db: Target, tmp_path: Path) -> None:
    data = json.loads(json.dumps(CANONICAL))
    for record, text in zip(data, UNUSUAL, strict=True):
        record["name"] = text
        record["instructions"] = [text, f"then {text}"]
        record["aliases"] = [text[::-1]]
    path = tmp_path / "unusual.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    run_seed(SETTINGS, migrated_db, SeedOptions(data_file=path), lambda _line: None)
    with psycopg.connect(migrated_db.conninfo) as conn:
        stored = {slug: (name, instructions, aliases) for slug, name, instructions, aliases in conn.execute(
            "SELECT slug, name, instructions, aliases FROM movement_library")}
    for record in data:
        assert stored[record["slug"]] == (record["name"], record["instructions"], record["aliases"])
    before = table_hashes(migrated_db)
    run_seed(SETTINGS, migrated_db, SeedOptions(data_file=path), lambda _line: None)
    assert table_hashes(migrated_db) == before


def test_a_sql_ascii_database_is_seeded_verified_dumped_and_restored(cli: Cli, pg18: Server, tmp_path: Path) -> None:
    """initdb without a locale gives SQL_ASCII databases, still common on old servers: movelib's
    connections (and yoyo's, and psql's) speak UTF-8 there all the same."""
    names: list[str] = []
    with pg18.admin() as conn:
        for _ in range(2):
            names.append(f"ascii_{len(names)}_{os.getpid()}")
            conn.execute(f"CREATE DATABASE {names[-1]} TEMPLATE template0 ENCODING 'SQL_ASCII' "
                         "LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        source, copy = (pg18.dsn(name) for name in names)
        seeded = cli("seed", "--dsn", source)
        assert seeded.code == 0, seeded.output
        assert cli("verify", "--dsn", source, "--file", str(ROOT / "data" / "movements-canonical.json")).code == 0
        assert cli("dump", "--dsn", source, "--output-dir", str(tmp_path)).code == 0
        restored = cli("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"), "--dsn", copy, "--yes")
        assert restored.code == 0, restored.output
        version, problem = query_server_version(Profile("ascii", "127.0.0.1", pg18.port, TEST_USER,
                                                        SENTINEL_PASSWORD, names[0]))
        assert not problem and version.startswith("18."), version
    finally:
        for name in names:
            pg18.drop_database(name)
