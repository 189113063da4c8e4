"""Scale: synthetic and real catalogues, the streaming loader, progress output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from support import FREE_EXERCISE_DB, SCHEMA, Cli, settings

from movelib.base.errors import DataFileError
from movelib.base.progress import ProgressReporter
from movelib.database.target import Target
from movelib.seed.verify import verify
from movelib.seed.workflow import SeedOptions, run_seed
from movelib.source.datafile import canonical_json, load_movements
from movelib.source.importers.free_exercise_db import convert, import_file
from movelib.source.synth import write_synthetic

SETTINGS = settings()


def test_ten_thousand_synthetic_movements_seed_and_verify(migrated_db: Target, tmp_path: Path) -> None:
    path = tmp_path / "synth.json"
    write_synthetic(10_000, path)
    lines: list[str] = []
    run_seed(SETTINGS, migrated_db, SeedOptions(data_file=path), lines.append)
    assert "seed: 10000 published (0 new versions), 0 unchanged, 0 retired (seed run 1)" in lines
    report = verify(migrated_db, data_file=path, schema_file=SCHEMA)
    assert report.ok, report.problems
    assert report.counts == {"library": 10_000, "current": 10_000, "staging": 10_000, "audit_log": 50_000}


def test_synthetic_files_are_deterministic_valid_and_varied(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    write_synthetic(500, a)
    write_synthetic(500, b)
    write_synthetic(500, c, seed=7)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert len(load_movements(a, SCHEMA)) == 500
    records = json.loads(a.read_text())
    assert len({r["classification"] for r in records}) >= 10
    assert len({tuple(r["equipment"]) for r in records}) >= 50


def test_free_exercise_db_imports_seeds_and_verifies(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    out = tmp_path / "free-exercise-db.json"
    imported = cli("data.import", "free-exercise-db", "--source", str(FREE_EXERCISE_DB), "--out", str(out))
    assert imported.code == 0, imported.output
    assert "import: 873 movements" in imported.stdout
    assert "5 record(s) have no instructions" in imported.stdout
    seeded = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(out), "--quiet")
    assert seeded.code == 0, seeded.output
    assert "seed: 873 published" in seeded.stdout
    verified = cli("verify", "--dsn", migrated_db.conninfo, "--file", str(out))
    assert verified.code == 0 and "verify: ok (library 873, current 873, staging 873, audit_log 4365)" in verified.stdout


def test_the_import_maps_every_field() -> None:
    records = json.loads(FREE_EXERCISE_DB.read_text())
    movements, report = convert(records)
    assert not report.unknown
    squat = next(m for m in movements if m["name"] == "Barbell Full Squat")
    assert squat["classification"] == "squat" and squat["equipment"] == ["barbell"]
    assert squat["primary_muscles"] == ["quadriceps"] and squat["level"] == "intermediate"
    lower_back = [m for m in movements if "lower-back" in m["primary_muscles"]]
    assert lower_back and all("lower back" not in m["primary_muscles"] for m in movements)
    assert {m["level"] for m in movements} == {"beginner", "intermediate", "advanced"}
    assert len({m["slug"] for m in movements}) == len(records)


def test_unknown_catalogue_values_fail_the_import_and_are_all_listed(tmp_path: Path) -> None:
    records = json.loads(FREE_EXERCISE_DB.read_text())[:3]
    records[0]["equipment"] = "hover board"
    records[1]["primaryMuscles"] = ["spleen"]
    records[2]["category"] = "yoga"
    source = tmp_path / "odd.json"
    source.write_text(json.dumps(records))
    out = tmp_path / "out.json"
    with pytest.raises(DataFileError) as info:
        import_file(source, out)
    message = str(info.value)
    assert "'hover board' (1)" in message and "'spleen' (1)" in message and "'yoga' (1)" in message
    assert not out.exists()


def test_orjson_canonical_form_equals_the_standard_librarys() -> None:
    documents = json.loads(FREE_EXERCISE_DB.read_text())
    documents.append({"q": "\"quoted\" \\ back\\slash \u2028 \x00 \x1f é 😀 مرحبا", "z": ["a", "ß"], "B": "k"})
    for document in documents:
        assert canonical_json(document) == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_terminal_is_one_live_line() -> None:
    out, clock = io.StringIO(), Clock()
    report = ProgressReporter(out, tty=True, clock=clock)
    report("load", 0, 100)
    clock.now = 0.5
    report("load", 40, 100)  # under a second: not shown yet
    assert out.getvalue() == ""
    clock.now = 2.0
    report("load", 80, 100)
    clock.now = 4.0
    report("load", 100, 100)
    assert out.getvalue() == "\r\033[Kload: 80/100 (40/s, 2.0 s)\r\033[Kload: 100/100 (25/s, 4.0 s)\n"


def test_progress_without_a_terminal_is_plain_log_lines() -> None:
    out, clock = io.StringIO(), Clock()
    report = ProgressReporter(out, tty=False, clock=clock)
    report("validate", 0, None)
    for second in range(1, 12):
        clock.now = float(second)
        report("validate", second * 1000, None)
    clock.now = 12.0
    report("validate", 12000, 12000)
    assert out.getvalue().splitlines() == [
        "validate: 5,000 (1,000/s, 5.0 s)", "validate: 10,000 (1,000/s, 10.0 s)",
        "validate: 12,000/12,000 (1,000/s, 12.0 s)"]


def test_quiet_silences_progress() -> None:
    out, clock = io.StringIO(), Clock()
    report = ProgressReporter(out, tty=True, quiet=True, clock=clock)
    clock.now = 10.0
    report("load", 5, 10)
    assert out.getvalue() == ""
