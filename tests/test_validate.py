"""`inv validate`: every problem of a data file, each located, with no database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movelib import dataset as dataset_module
from movelib.dataset import load_movements
from movelib.errors import DataFileError
from movelib.synth import write_synthetic

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


# The batched reader cuts the file after "},{" and counts string delimiters to find duplicate
# keys. Texts full of braces, quotes and backslashes, tiny batches and duplicated keys: whatever
# it accepts must be exactly what the reference parser accepts, with the same hashes.
TRICKY = st.text(alphabet=list('ab },{[]":\\\n\u00e9x'), min_size=1, max_size=14)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(TRICKY, min_size=1, max_size=6), dup=st.one_of(st.none(), st.integers(0, 5)),
       batch=st.sampled_from([8, 40, 200, 1 << 21]), ascii_only=st.booleans(),
       separator=st.sampled_from([",", ", ", ",\n  "]), two_processes=st.booleans())
def test_the_batched_reader_agrees_with_the_reference(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names: list[str], dup: int | None,
    batch: int, ascii_only: bool, separator: str, two_processes: bool,
) -> None:
    monkeypatch.setattr(dataset_module, "BATCH_BYTES", batch)
    monkeypatch.setattr(dataset_module, "PARALLEL_MIN_BYTES", 0 if two_processes else 1 << 40)
    records = []
    for i, name in enumerate(names):
        pairs = [*{**CANONICAL[i % 8], "slug": f"s-{i}", "name": name}.items()]
        if dup == i:
            pairs.append(("name", "Second Name"))
        records.append("{" + separator.join(
            f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=ascii_only)}" for k, v in pairs) + "}")
    raw = ("[\n" + separator.join(records) + "\n]\n").encode("utf-8")
    path = tmp_path / "tricky.json"
    path.write_bytes(raw)
    try:
        expected = dataset_module._careful_pass(raw, "tricky.json", SCHEMA)
    except DataFileError:
        expected = None
    try:
        got = dataset_module._fast_pass(path, SCHEMA, None)
    except dataset_module._NeedsReport:
        got = None
    if expected is None:
        assert got is None, "the fast pass accepted what the reference refuses"
    elif got is not None:
        assert got == expected


def test_escaped_quotes_and_duplicates_behind_unicode_escapes(tmp_path: Path) -> None:
    record = json.dumps({**CANONICAL[0], "name": 'Say "hi" \\ there'})
    # \u0022 is a quote written as an escape; a duplicate key hides behind it
    tricky = record.replace('\\"hi\\"', "\\u0022hi\\u0022")
    path = write(tmp_path, f"[{tricky}]")
    assert load_movements(path, SCHEMA).entries[0].content_hash == \
        load_movements(write(tmp_path, f"[{record}]", "plain.json"), SCHEMA).entries[0].content_hash
    duplicated = tricky[:-1] + ', "name": "x\\u0022y"}'
    path = write(tmp_path, f"[{duplicated}]", "dup.json")
    with pytest.raises(dataset_module._NeedsReport):
        dataset_module._fast_pass(path, SCHEMA, None)
    assert any("duplicate key 'name'" in line for line in problems(path))


def test_a_slug_with_a_final_newline_is_refused(tmp_path: Path) -> None:
    # Python's re lets "$" match before a final newline; the schema's patterns are ECMA-262.
    data = json.loads(json.dumps(CANONICAL))
    data[2]["slug"] = "romanian-deadlift\n"
    lines = problems(write(tmp_path, data))
    assert lines[0].startswith("movements.json: record 2")
    assert "at /2/slug" in lines[0] and "does not match" in lines[0]


@pytest.mark.parametrize("fault", [None, "slug of the first record, again in the last",
                                   "a duplicate key in the second half"])
def test_two_processes_read_a_large_file_like_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  fault: str | None) -> None:
    path = tmp_path / "synth.json"
    write_synthetic(3000, path)
    if fault:
        data = json.loads(path.read_text(encoding="utf-8"))
        text = path.read_text(encoding="utf-8")
        if fault.startswith("slug"):
            data[-1]["slug"] = data[0]["slug"]
            text = json.dumps(data)
        else:
            last = json.dumps(data[-1])
            text = text.replace(last, last[:-1] + ', "level": "advanced"}')
        path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(dataset_module, "PARALLEL_MIN_BYTES", 1 << 40)
    try:
        one = load_movements(path, SCHEMA, display_name="synth.json")
    except DataFileError as exc:
        one_error = str(exc)
    else:
        one_error = ""
    monkeypatch.setattr(dataset_module, "PARALLEL_MIN_BYTES", 0)
    forks = []
    real_pass = dataset_module._two_process_pass
    monkeypatch.setattr(dataset_module, "_two_process_pass",
                        lambda *a: forks.append(1) or real_pass(*a))  # type: ignore[func-returns-value]
    if fault:
        with pytest.raises(DataFileError) as info:
            load_movements(path, SCHEMA, display_name="synth.json")
        assert str(info.value) == one_error
        assert "record 2999" in one_error
    else:
        two = load_movements(path, SCHEMA, display_name="synth.json")
        assert (two.sha256, two.entries) == (one.sha256, one.entries)
        validator = dataset_module._fast_validator(SCHEMA, SCHEMA.stat().st_mtime)
        halves = real_pass(path, validator, True, None)  # used, not a fallback to one pass
        assert halves == (one.sha256, one.entries)
    assert forks


def test_nul_is_refused_but_a_backslash_before_u0000_is_text(tmp_path: Path) -> None:
    data = json.loads(json.dumps(CANONICAL))
    data[4]["instructions"] = ["Write \\u0000 on the board"]  # a backslash, then "u0000"
    path = write(tmp_path, data)
    assert len(load_movements(path, SCHEMA)) == 8  # the careful pass tells the two apart
    data[4]["instructions"] = ["Back\u0000Squat"]
    lines = problems(write(tmp_path, data, "nul.json"))
    assert lines[0].startswith("nul.json: record 4") and "/4/instructions/0: holds \\u0000" in lines[0]
