"""Plans people review: `inv seed --dry-run --format text|json|markdown`, and diffs that show
where two long values differ."""

from __future__ import annotations

import json
import re
from array import array
from pathlib import Path
from typing import Any

import pytest
from support import CANONICAL, Cli, table_hashes
from support import seed_run as seed

from movelib.database.target import Target
from movelib.seed.plan import FieldDiff, Plan
from movelib.seed.plan_markdown import MD_ROWS, markdown, md

HOSTILE_NAME = "Back | Squat `rm -rf` <img src=x onerror=alert(1)>\n## injected & more"
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def records() -> list[dict[str, Any]]:
    return list(json.loads(CANONICAL.read_text()))


def write(tmp_path: Path, data: list[dict[str, Any]], name: str = "pr.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def pull_request_file(tmp_path: Path) -> Path:
    """What a pull request might hold: one movement renamed (hostile text), one new, one dropped."""
    data = [r for r in records() if r["slug"] != "farmers-carry"]
    data[0]["name"] = HOSTILE_NAME
    data.append({**data[1], "slug": "sumo-deadlift", "name": "Sumo Deadlift"})
    return write(tmp_path, data)


def tables(text: str) -> list[list[str]]:
    """The Markdown tables of ``text``: runs of lines that start with a pipe."""
    found: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous:
            found.append([])
        if is_row:
            found[-1].append(line)
        previous = is_row
    return found


def test_the_markdown_plan_a_reviewer_reads(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    before = table_hashes(migrated_db)
    result = cli("seed", "--dsn", migrated_db.conninfo, "--file", str(pull_request_file(tmp_path)),
                 "--dry-run", "--format", "markdown")
    assert result.code == 1  # blocked changes: the seed would be refused, result.output
    out = result.stdout
    first = out.splitlines()[0]
    assert first.startswith("### Seed plan for ") and first.endswith("pr.json"), out  # the document alone
    assert result.stderr.startswith("target: postgresql://movelib_test:***@")
    assert "Dry run: nothing was written." in out and "Pending migrations: none" in out
    for heading in ("#### New: 1", "#### Changed: 1", "#### Missing from the data file: 1",
                    "<details><summary>Unchanged: 6</summary>"):
        assert heading in out, heading
    assert "| sumo-deadlift | publish v1 |" in out
    assert "| farmers-carry | v1 | kept (--retire retires it) |" in out
    # the hostile name stays inside its cell: no raw HTML, no new line, no extra column
    assert "<img" not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    assert "\\`rm -rf\\`" in out and "Back \\| Squat" in out and "\\\\n## injected &amp; more" in out
    assert not any(line.startswith("## injected") for line in out.splitlines())
    for table in tables(out):
        columns = len(UNESCAPED_PIPE.findall(table[0]))
        assert all(len(UNESCAPED_PIPE.findall(row)) == columns for row in table), table
    assert table_hashes(migrated_db) == before


def test_format_json_and_its_alias_list_every_movement(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    assert cli("seed", "--dsn", migrated_db.conninfo).code == 0
    path = str(pull_request_file(tmp_path))
    by_format = cli("seed", "--dsn", migrated_db.conninfo, "--file", path, "--dry-run", "--format", "json")
    by_alias = cli("seed", "--dsn", migrated_db.conninfo, "--file", path, "--dry-run", "--json")
    assert by_format.code == 1 and by_format.stdout == by_alias.stdout  # blocked: would refuse
    plan = json.loads(by_format.stdout)
    statuses = {m["slug"]: m["status"] for m in plan["movements"]}
    assert len(statuses) == 9 and list(statuses.values()).count("unchanged") == 6
    assert statuses["sumo-deadlift"] == "new" and statuses["farmers-carry"] == "missing"
    assert plan["totals"]["unchanged"] == 6


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(["--format", "markdown"], "--format markdown goes with --dry-run", id="markdown-without-dry-run"),
        pytest.param(["--json"], "--format json goes with --dry-run", id="json-without-dry-run"),
        pytest.param(["--dry-run", "--format", "yaml"], "--format takes text, json, markdown", id="unknown-format"),
        pytest.param(["--dry-run", "--json", "--format", "markdown"], "--json is --format json", id="json-and-markdown"),
    ],
)
def test_a_format_that_does_not_fit_is_one_line(cli: Cli, args: list[str], says: str) -> None:
    result = cli("seed", "--dsn", "postgresql://nobody@127.0.0.1:1/none", *args)
    assert result.code == 2 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "target:" not in result.output


def test_text_names_unchanged_movements_when_few(migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    _, lines = seed(migrated_db, dry_run=True)
    assert ("  UNCHANGED  8 movement(s): back-squat, deadlift, bench-press, "
            "overhead-press, pull-up, bent-over-row, walking-lunge, farmers-carry") in lines
    many = records() + [{**records()[0], "slug": f"squat-{n}"} for n in range(5)]
    seed(migrated_db, write(tmp_path, many))
    _, lines = seed(migrated_db, write(tmp_path, many), dry_run=True)
    assert "  UNCHANGED  13 movement(s) (--format json lists every movement)" in lines


def test_two_long_lists_that_end_alike_show_where_they_differ() -> None:
    old = [f"Step {n}: keep the bar over the mid-foot and the back flat" for n in range(12)]
    new = [*old[:7], "Step 7: CHANGED", *old[8:]]
    shown = str(FieldDiff("instructions", old, new))
    assert shown == ('instructions: (12 items) [7] "Step 7: keep the bar over the mid-foot and the back flat" '
                     '-> (12 items) [7] "Step 7: CHANGED"')
    appended = str(FieldDiff("instructions", old, [*old, "Step 12: rest"]))
    assert appended.endswith('(12 items) [12] (none) -> (13 items) [12] "Step 12: rest"')


def test_a_long_text_changed_near_its_end_is_cut_around_the_change() -> None:
    old = "Brace hard. " * 40 + "Stand up fast."
    new = "Brace hard. " * 40 + "Stand up slowly."
    text = str(FieldDiff("note", old, new))
    assert "Stand up fast" in text and "Stand up slowly" in text
    assert text.count("characters]...") == 2  # what is left out before is marked, both sides
    short = str(FieldDiff("name", "Back Squat", "Front Squat"))
    assert short == 'name: "Back Squat" -> "Front Squat"'


def test_markdown_cells_escape_what_could_break_a_table() -> None:
    assert md("a|b`c\\d*e_f[g]h~i") == "a\\|b\\`c\\\\d\\*e\\_f\\[g\\]h\\~i"
    assert md("<script>alert(1)</script> & co") == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
    assert md("one\ntwo\r\x1b[31m") == "one\\\\ntwo\\\\x0d\\\\x1b\\[31m"
    cut = md("x" * 500)
    assert cut.startswith("x" * 120) and cut.endswith("...\\[380 more characters\\]")


def test_a_long_plan_is_folded_and_stops_at_the_row_limit() -> None:
    new, unchanged = MD_ROWS + 50, MD_ROWS + 70
    count = new + unchanged
    plan = Plan([f"move-{n:04d}" for n in range(count)], bytearray(new) + bytearray([1]) * unchanged,
                array("i", [0]) * new + array("i", [1]) * unchanged,
                array("i", [1]) * new + array("i", [0]) * unchanged)
    text = markdown(plan, target="postgresql://u:***@h:1/d (from --dsn)", data_file="big.json",
                    pending=["0003.provenance"])
    assert f"<details><summary>New: {new}</summary>" in text
    assert "... and 50 more rows (`inv seed --dry-run --format json` lists every movement)" in text
    assert "move-0199" in text and "move-0200" not in text
    assert f"<details><summary>Unchanged: {unchanged}</summary>" in text
    assert f"move-{new:04d}" in text and f"move-{new + MD_ROWS - 1:04d}, move" not in text
    assert f"move-{new + MD_ROWS - 1:04d} ... and 70 more" in text
    assert "Pending migrations: 0003.provenance (applied first)" in text
