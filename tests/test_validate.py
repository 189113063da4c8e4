"""`inv validate`: every problem of a data file, each located, with no database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT, Cli

from movelib.base.errors import ConfigError, DataFileError
from movelib.source.datafile import batches, fanout, load_movements, precise, schema
from movelib.source.datafile import load as load_module
from movelib.source.synth import write_synthetic

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
    assert lines[3] == "movements.json: 3 problem(s)"


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


CANONICAL_TEXT = (ROOT / "data" / "movements-canonical.json").read_text(encoding="utf-8")
LAST_LINE = CANONICAL_TEXT.rstrip()[:-1].rstrip().count("\n") + 1  # the last record's "}"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(CANONICAL_TEXT.rstrip()[:-1], f"movements.json:{LAST_LINE}:4: the file ends before the closing ']' of the array of movements (opened at line 1, column 1)", id="missing-final-bracket"),
        pytest.param('[\n  {"slug": "a", "name": "A"}', "movements.json:2:29: the file ends before the closing ']' of the array of movements (opened at line 1, column 1)", id="missing-final-bracket-no-newline"),
        pytest.param('[\n  {"slug": "a",\n   "name": "A"\n', "movements.json:3:15: the file ends before the closing '}' of the object opened at line 2, column 3", id="missing-closing-brace"),
        pytest.param('[\n  {"slug": "a", "instructions": ["x", "y"', "movements.json:2:42: the file ends before the closing ']' of the list opened at line 2, column 33", id="missing-closing-bracket-of-a-list"),
        pytest.param('[\n  {"slug": "a", "name": "Back Sq', "movements.json:2:25: the file ends inside the string that starts here (line 2, column 25)", id="inside-a-string"),
        pytest.param('[\n  {"slug": "a", "name": ', "movements.json:2:24: the file ends where a value should follow (the object opened at line 2, column 3 is not closed)", id="after-a-colon"),
    ],
)
def test_a_truncated_file_says_where_it_ends_and_what_is_left_open(tmp_path: Path, content: str, expected: str) -> None:
    """A file cut short (a copy that did not finish, an editor's lost last line) is named as
    such, with the position, rather than as Python's parser sees its end."""
    lines = problems(write(tmp_path, content))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_validate_names_a_missing_final_bracket(cli: Cli, tmp_path: Path) -> None:
    result = cli("validate", "--file", str(write(tmp_path, CANONICAL_TEXT.rstrip()[:-1])))
    assert result.code == 1, result.output
    assert "the file ends before the closing ']' of the array of movements" in result.stderr
    assert "Expecting" not in result.stderr


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


def test_cli_exit_codes(cli: Cli, tmp_path: Path) -> None:
    ok = cli("validate")
    assert ok.code == 0 and "8 movements, valid" in ok.stdout
    bad = cli("validate", "--file", str(write(tmp_path, "[1, 2]")))
    assert bad.code == 1
    assert "record 0 at /0: expected object, got 1" in bad.stderr
    assert "record 1 at /1: expected object, got 2" in bad.stderr
    assert "Traceback" not in bad.output
    missing = cli("validate", "--file", str(tmp_path / "nope.json"))
    assert missing.code == 2 and "no such file" in missing.stderr


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
    monkeypatch.setattr(batches, "BATCH_BYTES", batch)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 0 if two_processes else 1 << 40)
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
        expected = precise.careful_pass(raw, "tricky.json", SCHEMA)
    except DataFileError:
        expected = None
    try:
        got = load_module._fast_pass(path, SCHEMA, None)
    except batches.NeedsReport:
        got = None
    if expected is None:
        assert got is None, "the fast pass accepted what the reference refuses"
    elif got is not None:
        assert got == expected


def test_a_record_of_many_batches_is_searched_for_a_cut_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a record longer than a batch is read on block by block; searching the whole of it again
    # after each block made a 50 MB value take minutes (quadratic): each byte is searched once
    real = batches.BOUNDARY
    scanned = []

    class Counting:
        def finditer(self, text: bytes, pos: int = 0) -> Any:
            scanned.append(len(text) - pos)
            return real.finditer(text, pos)

    monkeypatch.setattr(batches, "BOUNDARY", Counting())
    braces = {**CANONICAL[0], "name": "} , " * (1 << 20)}  # 4 MiB, 32 batches, braces throughout
    nested = {"first": {}, "name": "x" * (4 << 20)}  # a '}' early, then none for 4 MiB
    for long in (braces, nested):
        scanned.clear()
        path = write(tmp_path, [long, CANONICAL[1]])
        parsed = [record for batch in batches.Batches.of_file(path) for record in batch]
        assert parsed == [long, CANONICAL[1]]
        assert len(scanned) > 32 and sum(scanned) < 2 * path.stat().st_size


def test_escaped_quotes_and_duplicates_behind_unicode_escapes(tmp_path: Path) -> None:
    record = json.dumps({**CANONICAL[0], "name": 'Say "hi" \\ there'})
    # \u0022 is a quote written as an escape; a duplicate key hides behind it
    tricky = record.replace('\\"hi\\"', "\\u0022hi\\u0022")
    path = write(tmp_path, f"[{tricky}]")
    assert load_movements(path, SCHEMA).entries[0].content_hash == \
        load_movements(write(tmp_path, f"[{record}]", "plain.json"), SCHEMA).entries[0].content_hash
    duplicated = tricky[:-1] + ', "name": "x\\u0022y"}'
    path = write(tmp_path, f"[{duplicated}]", "dup.json")
    with pytest.raises(batches.NeedsReport):
        load_module._fast_pass(path, SCHEMA, None)
    assert any("duplicate key 'name'" in line for line in problems(path))


def test_a_slug_with_a_final_newline_is_refused(tmp_path: Path) -> None:
    # Python's re lets "$" match before a final newline; the schema's patterns are ECMA-262.
    data = json.loads(json.dumps(CANONICAL))
    data[2]["slug"] = "romanian-deadlift\n"
    lines = problems(write(tmp_path, data))
    assert lines[0].startswith("movements.json: record 2")
    assert "at /2/slug" in lines[0] and "does not match" in lines[0]


@pytest.mark.linux  # the two-process pass forks
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
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 1 << 40)
    try:
        one = load_movements(path, SCHEMA, display_name="synth.json")
    except DataFileError as exc:
        one_error = str(exc)
    else:
        one_error = ""
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 0)
    forks = []
    real_pass = fanout.two_process_pass
    monkeypatch.setattr(fanout, "two_process_pass",
                        lambda *a: forks.append(1) or real_pass(*a))  # type: ignore[func-returns-value]
    if fault:
        with pytest.raises(DataFileError) as info:
            load_movements(path, SCHEMA, display_name="synth.json")
        assert str(info.value) == one_error
        assert "record 2999" in one_error
    else:
        two = load_movements(path, SCHEMA, display_name="synth.json")
        assert (two.sha256, two.entries) == (one.sha256, one.entries)
        validator = schema.fast_validator(SCHEMA, SCHEMA.stat().st_mtime)
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


# What orjson refuses to read but the reference parser reads: the precise report names it.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("9" * 5000, "record 2 (bench-press) at /2/name: an integer of 5000 digits, too long to read", id="a-5000-digit-integer"),
        pytest.param('"Bench \\ud800 Press"', "record 2 (bench-press) at /2/name: holds a lone surrogate (\\ud800)", id="a-lone-surrogate"),
    ],
)
def test_values_orjson_cannot_read_get_a_precise_report(cli: Cli, tmp_path: Path, value: str, expected: str) -> None:
    records = [json.dumps(record) for record in CANONICAL]
    records[2] = json.dumps({**CANONICAL[2], "name": "@"}).replace('"@"', value)
    path = write(tmp_path, "[" + ",\n".join(records) + "]")
    lines = problems(path)
    assert lines[0].startswith(f"movements.json: {expected}"), lines
    assert lines[-1] == "movements.json: 1 problem(s)"
    result = cli("validate", "--file", str(path))
    assert result.code == 1 and expected in result.stderr
    assert "Traceback" not in result.output


def test_a_lone_surrogate_in_a_key_is_reported_printably(tmp_path: Path) -> None:
    records = [json.dumps(record) for record in CANONICAL]
    records[5] = records[5][:-1] + ', "\\udc00": {"x": "\\u0000"}}'
    lines = problems(write(tmp_path, "[" + ",".join(records) + "]"))
    assert lines[0] == ("movements.json: record 5 (bent-over-row) at /5: the key '\\udc00' holds a "
                        "lone surrogate, which is not Unicode text; rename it")
    assert lines[1].startswith("movements.json: record 5 (bent-over-row) at /5/\\udc00/x: holds \\u0000")
    "\n".join(lines).encode("utf-8")  # printable: no lone surrogate reaches the terminal


LAX_SCHEMA = {"type": "array"}  # a schema that leaves what a movement file is to movelib


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param('[{"slug": "a"}, 3]', "record 1 at /1: expected an object with a string \"slug\"", id="a-record-that-is-not-an-object"),
        pytest.param('[{"slug": "a"}, {"name": "b"}]', "record 1 at /1: expected an object with a string \"slug\"", id="a-record-without-a-slug"),
        pytest.param('[{"slug": ["a"]}, {"slug": 2}]', "record 0 at /0: expected an object with a string \"slug\"", id="slugs-that-are-not-strings"),
    ],
)
def test_a_lax_schema_still_gets_a_precise_report(tmp_path: Path, content: str, expected: str) -> None:
    schema = write(tmp_path, LAX_SCHEMA, "lax.schema.json")
    path = write(tmp_path, content)
    with pytest.raises(batches.NeedsReport):
        load_module._fast_pass(path, schema, None)
    with pytest.raises(DataFileError) as info:
        load_movements(path, schema, display_name=path.name)
    assert f"movements.json: {expected}" in str(info.value).splitlines()


def test_a_record_nested_deeper_than_orjson_writes_is_read_the_same_by_both_passes(tmp_path: Path) -> None:
    schema = write(tmp_path, LAX_SCHEMA, "lax.schema.json")
    deep = {"slug": "deep", "x": json.loads("[" * 300 + "]" * 300)}
    path = write(tmp_path, json.dumps([deep]))
    fast = load_module._fast_pass(path, schema, None)  # no NeedsReport: the fast pass reads it
    assert fast == precise.careful_pass(path.read_bytes(), "movements.json", schema)
    reference = json.dumps(deep, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    movements = list(load_movements(path, schema).movements())
    assert [m.canonical for m in movements] == [reference]
    assert len(load_movements(path, schema, hashes=False)) == 1


def test_a_schema_that_cannot_be_used_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, CANONICAL)
    for name, content, expected in [("missing.json", None, "cannot read the schema"),
                                    ("broken.json", "{", "cannot read the schema"),
                                    ("invalid.json", '{"type": 5}', "is not a valid JSON Schema")]:
        schema = tmp_path / name if content is None else write(tmp_path, content, name)
        with pytest.raises(ConfigError, match=expected):
            load_movements(path, schema)


# TypeError and KeyError are what a broad except once turned into a silent re-read of the file.
@pytest.mark.parametrize("bug", [RuntimeError, TypeError, KeyError])
def test_a_bug_on_the_fast_path_is_raised_not_hidden_by_the_precise_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bug: type[Exception],
) -> None:
    def broken(text: bytes) -> int:
        raise bug("a bug in the batch reader")

    path = write(tmp_path, CANONICAL)
    monkeypatch.setattr(batches, "delimiters", broken)
    monkeypatch.setattr(load_module, "careful_pass", lambda *a: pytest.fail("fell back to the precise report"))
    with pytest.raises(bug, match="a bug in the batch reader"):
        load_movements(path, SCHEMA)


def test_a_bug_in_the_child_process_is_raised_in_the_parent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "synth.json"
    write_synthetic(3000, path)
    parent = os.getpid()
    real = batches.delimiters

    def broken_in_the_child(text: bytes) -> int:
        if os.getpid() != parent:
            raise RuntimeError("a bug in the child's reader")
        return real(text)

    monkeypatch.setattr(batches, "delimiters", broken_in_the_child)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 0)
    validator = schema.fast_validator(SCHEMA, SCHEMA.stat().st_mtime)
    with pytest.raises(RuntimeError, match="failed in a child process") as info:
        fanout.two_process_pass(path, validator, True, None)
    assert "RuntimeError: a bug in the child's reader" in str(info.value)
    with pytest.raises(RuntimeError, match="a bug in the child's reader"):
        load_movements(path, SCHEMA)


def test_the_report_gives_the_reference_validator_only_the_records_the_fast_one_refuses(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A file whose faults are a duplicate slug and one bad record: both reported precisely (the
    reference validator's own wording for the record), and that validator shown that record
    alone, not the other 2,999 (it takes ~0.7 ms a record: a minute for 100k)."""
    path = tmp_path / "synth.json"
    write_synthetic(3000, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data[-1]["slug"] = data[0]["slug"]
    data[1500]["slug"] = "Not A Slug"
    path.write_text(json.dumps(data), encoding="utf-8")
    seen: list[Any] = []
    real = schema.reference_validator

    class Watched:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def iter_errors(self, instance: Any) -> Any:
            seen.append(instance)
            return self.inner.iter_errors(instance)

    monkeypatch.setattr(precise, "reference_validator", lambda *a: Watched(real(*a)))
    lines = problems(path)
    assert lines[0].startswith("synth.json: record 1500 (Not A Slug) at /1500/slug:")
    assert "(lower-case words joined by hyphens)" in lines[0]  # the reference validator's report
    assert lines[1].startswith("synth.json: record 2999 ") and "duplicate slug" in lines[1]
    assert lines[2] == "synth.json: 2 problem(s)"
    assert seen == [[data[1500]]]


@pytest.mark.parametrize("depth", [255, 256, 900])
def test_a_field_nested_deeper_than_jsonschema_rs_reads_gets_the_reference_report(
        tmp_path: Path, depth: int) -> None:
    """jsonschema-rs stops at 256 levels (ValueError): the report then asks the reference
    validator about the whole file, as it did before it asked about refused records only."""
    record = json.loads(json.dumps(CANONICAL[0]))
    text = json.dumps([record]).replace(json.dumps(record["name"]),
                                        "[" * depth + '"Back Squat"' + "]" * depth, 1)
    lines = problems(write(tmp_path, text))
    assert lines[0].startswith("movements.json: record 0 (back-squat) at /0/name: expected string")


def test_a_schema_refusing_every_record_as_the_array_gets_the_reference_report(tmp_path: Path) -> None:
    """A schema jsonschema-rs judges record by record whose reference error is the array's (an
    `items` of false): the reference validator reads the whole file."""
    schema = write(tmp_path, {"type": "array", "items": False}, "none.schema.json")
    path = write(tmp_path, CANONICAL[:2])
    with pytest.raises(DataFileError) as info:
        load_movements(path, schema, display_name=path.name)
    lines = str(info.value).splitlines()
    assert lines[-1] == "movements.json: 1 problem(s)" and "Traceback" not in str(info.value), lines


def test_a_record_is_judged_by_ecma_262_whatever_else_is_wrong_in_the_file(tmp_path: Path) -> None:
    """The schema's patterns are ECMA-262's, whose \\S takes "\\x1c" (Python's re does not): a
    name of it is valid to the fast pass, and the precise report, asked because of a duplicate
    slug elsewhere, judges that record the same way."""
    data = json.loads(json.dumps(CANONICAL))
    data[2]["name"] = "\x1c"
    load_movements(write(tmp_path, data), SCHEMA)  # valid alone
    data[5]["slug"] = data[0]["slug"]
    lines = problems(write(tmp_path, data))
    assert len(lines) == 2 and "duplicate slug" in lines[0] and lines[1].endswith("1 problem(s)"), lines
