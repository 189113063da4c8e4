"""`inv validate`: every problem of a data file, each located, with no database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from movelib.dataset import load_movements
from movelib.errors import DataFileError

SCHEMA = ROOT / "schemas" / "movement.schema.json"
CANONICAL = json.loads((ROOT / "data" / "movements-canonical.json").read_text(encoding="utf-8"))


def write(tmp_path: Path, content: Any, name: str = "movements.json") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(DataFileError) as info:
        load_movements(path, SCHEMA, display_name=path.name)
    return str(info.value).splitlines()


def test_the_canonical_file_is_valid() -> None:
    dataset = load_movements(ROOT / "data" / "movements-canonical.json", SCHEMA)
    assert len(dataset) == 8
    assert "back-squat" in {e.slug for e in dataset.entries}
    streamed = list(dataset.movements())
    assert [m.content_hash for m in streamed] == [e.content_hash for e in dataset.entries]


def test_a_file_changed_between_passes_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CANONICAL)
    dataset = load_movements(path, SCHEMA)
    changed = json.loads(json.dumps(CANONICAL))
    changed[0]["name"] = "Changed Behind Our Back"
    write(tmp_path, changed)
    with pytest.raises(DataFileError, match="changed while it was being seeded"):
        list(dataset.movements())


def test_three_faults_are_all_listed_with_their_pointers(tmp_path: Path) -> None:
    data = json.loads(json.dumps(CANONICAL))
    data[1]["classification"] = "squatish"
    del data[3]["level"]
    data[6]["equipment"].append("spaceship")
    lines = problems(write(tmp_path, data))
    assert lines[0].startswith("movements.json: record 1 (deadlift) at /1/classification: "
                               '"squatish" is not one of: squat, hinge')
    assert lines[1] == ("movements.json: record 3 (overhead-press) at /3: "
                        "'level' is a required property")
    assert lines[2].startswith("movements.json: record 6 (walking-lunge) at /6/equipment/1: "
                               '"spaceship" is not one of')
    assert lines[3] == "movements.json: 3 problem(s); nothing was written"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param('[\n  {"slug": "a",\n   "name" "x"}\n]', "movements.json:3:11: JSON syntax error: Expecting ':' delimiter", id="syntax-error-line-and-column"),
        pytest.param("", "the file is empty", id="empty-file"),
        pytest.param(b"\xef\xbb\xbf[]", "byte order mark", id="bom"),
        pytest.param(b'[{"slug": "caf\xe9"}]', "movements.json:1:15: not valid UTF-8 (byte 0xe9", id="invalid-utf8"),
        pytest.param('{"slug": "a"}', "at /: expected array", id="object-instead-of-array"),
        pytest.param('[{"slug": "a", "slug": "b"}]', "record 0 (b) at /0: duplicate key 'slug'", id="duplicate-json-key"),
        pytest.param('[{"slug": "a", "weight": NaN}]', "record 0 (a) at /0/weight: NaN is not valid JSON", id="nan"),
        pytest.param("[" * 100000 + "]" * 100000, "nested too deeply", id="deep-nesting"),
    ],
)
def test_malformed_files_are_refused_with_a_location(tmp_path: Path, content: Any, expected: str) -> None:
    text = "\n".join(problems(write(tmp_path, content)))
    assert expected in text


def test_duplicate_slugs_and_unknown_fields(tmp_path: Path) -> None:
    data = json.loads(json.dumps(CANONICAL))
    data[4]["slug"] = "back-squat"
    data[5]["colour"] = "red"
    text = "\n".join(problems(write(tmp_path, data)))
    assert "record 4 (back-squat) at /4/slug: duplicate slug 'back-squat' (first used by record 0)" in text
    assert "record 5 (bent-over-row) at /5: Additional properties are not allowed ('colour' was unexpected)" in text


def test_slug_must_be_kebab_case(tmp_path: Path) -> None:
    data = json.loads(json.dumps(CANONICAL))
    data[0]["slug"] = "Back Squat'; DROP TABLE movement_library; --"
    text = "\n".join(problems(write(tmp_path, data)))
    assert "at /0/slug" in text and "lower-case words joined by hyphens" in text


def test_cli_exit_codes(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ok = cli("validate")
    assert ok.code == 0 and "8 movements, valid" in ok.stdout
    bad = cli("validate", "--file", str(write(tmp_path, "[1, 2]")))
    assert bad.code == 1
    assert "record 0 at /0: expected object, got 1" in bad.stderr
    assert "record 1 at /1: expected object, got 2" in bad.stderr
    assert "Traceback" not in bad.output
    missing = cli("validate", "--file", str(tmp_path / "nope.json"))
    assert missing.code == 1 and "no such file" in missing.stderr
