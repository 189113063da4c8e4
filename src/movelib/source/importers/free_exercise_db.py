"""free-exercise-db (public domain, github.com/yuhonas/free-exercise-db) -> movement records.

The mapping, field by field:

* ``name`` -> ``name``; ``slug`` is the name in kebab-case (``-2``, ``-3``... on a clash).
* ``category`` + ``force`` + ``mechanic`` + muscles + name -> ``classification``:
  stretching -> mobility, plyometrics -> plyometric, olympic weightlifting -> olympic-lift,
  cardio -> conditioning, strongman -> carry (carries, walks, yokes) or conditioning;
  strength and powerlifting: isolation when ``mechanic`` is isolation, else by name keywords
  (squat, lunge, deadlift, row, pull-up, press...) and then by the primary muscle.
* ``equipment`` (one value or null) -> ``equipment`` (a list; null -> empty): body only ->
  bodyweight, kettlebells -> kettlebell, bands -> band, e-z curl bar -> ez-bar, medicine ball ->
  medicine-ball, exercise ball -> exercise-ball, foam roll -> foam-roll; the rest keep their name.
* ``primaryMuscles`` / ``secondaryMuscles`` -> ``primary_muscles`` / ``secondary_muscles``
  (lower back -> lower-back, middle back -> middle-back).
* ``level``: expert -> advanced. ``force`` and ``mechanic`` are kept when present.
* ``instructions``: kept in order; blank lines are removed and counted in the report.
* ``laterality`` from the name: alternating, one-arm/single-leg... -> unilateral, else bilateral.
* ``id`` and ``images`` are not carried (the ``id`` is reported nowhere else; the slug replaces it).

A value the tables do not know is never dropped: the import fails and lists every such value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...base.errors import DataFileError, DataFileMissing, DataFileUnreadable
from ...base.files import write_atomically
from ...base.readonce import read_bounded
from ...base.text import shown, shown_path

CATEGORY = {
    "stretching": "mobility",
    "plyometrics": "plyometric",
    "olympic weightlifting": "olympic-lift",
    "cardio": "conditioning",
}
STRENGTH_CATEGORIES = {"strength", "powerlifting", "strongman"}
EQUIPMENT = {
    "barbell": "barbell", "dumbbell": "dumbbell", "other": "other", "body only": "bodyweight",
    "cable": "cable", "machine": "machine", "kettlebells": "kettlebell", "bands": "band",
    "medicine ball": "medicine-ball", "exercise ball": "exercise-ball", "foam roll": "foam-roll",
    "e-z curl bar": "ez-bar",
}
MUSCLES = {m: m.replace(" ", "-") for m in (
    "abdominals", "abductors", "adductors", "biceps", "calves", "chest", "forearms", "glutes",
    "hamstrings", "lats", "lower back", "middle back", "neck", "quadriceps", "shoulders",
    "traps", "triceps")}
LEVEL = {"beginner": "beginner", "intermediate": "intermediate", "expert": "advanced"}
FORCE = {"push", "pull", "static"}
MECHANIC = {"compound", "isolation"}
# name keyword -> classification, first match wins
KEYWORDS = [
    (r"\b(carry|farmer|yoke|walk)\b", "carry"),
    (r"\b(twist|rotation|woodchop|russian)\b", "rotation"),
    (r"\b(lunge|split squat|step-?up|step up)\b", "lunge"),
    (r"\bsquat", "squat"),
    (r"\b(deadlift|good morning|hip thrust|swing|hyperextension|pull through|rdl)\b", "hinge"),
    (r"\b(pull-?up|chin-?up|pulldown|pull-down)\b", "vertical-pull"),
    (r"\brow\b", "horizontal-pull"),
    (r"\b(overhead|military|shoulder press|push press|jerk|handstand)\b", "vertical-push"),
    (r"\b(bench|push-?up|dip|chest press|floor press|fly|flye)\b", "horizontal-push"),
    (r"\b(crunch|sit-?up|plank|rollout|leg raise|hollow)\b", "core"),
]
BY_MUSCLE = {
    "quadriceps": "squat", "hamstrings": "hinge", "glutes": "hinge", "lower back": "hinge",
    "chest": "horizontal-push", "shoulders": "vertical-push", "triceps": "horizontal-push",
    "lats": "vertical-pull", "middle back": "horizontal-pull", "biceps": "horizontal-pull",
    "traps": "carry", "forearms": "carry", "abdominals": "core", "calves": "plyometric",
    "adductors": "lunge", "abductors": "lunge", "neck": "isolation",
}
UNILATERAL = re.compile(r"\b(one|single)[- ](arm|leg|handed)|\bunilateral\b|\bside\b", re.I)


@dataclass
class ImportReport:
    records: int = 0
    unknown: dict[str, Counter[str]] = field(default_factory=dict)
    blank_instructions_removed: int = 0
    without_instructions: list[str] = field(default_factory=list)
    renamed_slugs: list[str] = field(default_factory=list)
    classifications: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"import: {self.records} movements"]
        out.append("  classification: " + ", ".join(
            f"{k} {v}" for k, v in sorted(self.classifications.items())))
        if self.without_instructions:
            out.append(f"  {len(self.without_instructions)} record(s) have no instructions (kept "
                       f"with an empty list): {', '.join(self.without_instructions)}")
        if self.blank_instructions_removed:
            out.append(f"  {self.blank_instructions_removed} blank instruction line(s) removed")
        if self.renamed_slugs:
            out.append(f"  slugs made unique: {', '.join(self.renamed_slugs)}")
        return out


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "movement"


def _classify(record: dict[str, Any]) -> str:
    category = record.get("category")
    name = str(record.get("name", "")).lower()
    if category in CATEGORY:
        return CATEGORY[category]
    if category == "strongman" and not re.search(KEYWORDS[0][0], name):
        return "conditioning"
    if record.get("mechanic") == "isolation":
        return "isolation"
    for pattern, classification in KEYWORDS:
        if re.search(pattern, name):
            return classification
    primary = (record.get("primaryMuscles") or ["?"])[0]
    return BY_MUSCLE.get(primary, "isolation")


# The type each field of a free-exercise-db record has (None: absent or null is allowed too); a
# record holding another is named, not guessed at (a string of instructions is not one step per
# character, a list of equipment is not one piece).
SHAPE: dict[str, tuple[type, bool]] = {
    "name": (str, False), "category": (str, True), "equipment": (str, True), "level": (str, True),
    "force": (str, True), "mechanic": (str, True), "instructions": (list, True),
    "primaryMuscles": (list, True), "secondaryMuscles": (list, True)}


SHOWN_SHAPES = 10
MAX_CATALOGUE_BYTES = 1 << 30  # free-exercise-db's exercises.json is about 1 MB


def malformed(record: dict[str, Any]) -> list[str]:
    """What in ``record`` is not of free-exercise-db's shape (:data:`SHAPE`), field by field."""
    problems = []
    for key, (kind, nullable) in SHAPE.items():
        value = record.get(key)
        if value is None and nullable:
            continue
        if not isinstance(value, kind):
            problems.append(f"{key} is {type(value).__name__ if value is not None else 'missing'}"
                            f", not {'a list of strings' if kind is list else 'a string'}")
        elif isinstance(value, list) and not all(isinstance(item, str) for item in value):
            problems.append(f"{key} holds something other than strings")
    return problems


def convert(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], ImportReport]:
    report = ImportReport(records=len(records))

    def known(table: dict[str, str] | set[str], kind: str, value: Any) -> bool:
        if value in table:
            return True
        report.unknown.setdefault(kind, Counter())[str(value)] += 1
        return False

    out: list[dict[str, Any]] = []
    used: set[str] = set()
    for record in records:
        name = str(record["name"]).strip()
        slug = base = slugify(name)
        n = 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        if slug != base:
            report.renamed_slugs.append(slug)
        used.add(slug)
        category = record.get("category")
        if category not in CATEGORY and category not in STRENGTH_CATEGORIES:
            known(CATEGORY, "category", category)
        equipment = record.get("equipment")
        instructions = [line.strip() for line in record.get("instructions") or []]
        report.blank_instructions_removed += sum(1 for line in instructions if not line)
        instructions = [line for line in instructions if line]
        if not instructions:
            report.without_instructions.append(slug)
        movement: dict[str, Any] = {
            "slug": slug,
            "name": name,
            "classification": _classify(record),
            "equipment": [EQUIPMENT[equipment]]
            if equipment is not None and known(EQUIPMENT, "equipment", equipment) else [],
            "primary_muscles": [MUSCLES[m] for m in record.get("primaryMuscles") or []
                                if known(MUSCLES, "muscle", m)],
            "secondary_muscles": [MUSCLES[m] for m in record.get("secondaryMuscles") or []
                                  if known(MUSCLES, "muscle", m)],
            "level": LEVEL.get(record.get("level", ""), "")
            if known(LEVEL, "level", record.get("level")) else "",
            "instructions": instructions,
            "laterality": "alternating" if "alternat" in name.lower()
            else "unilateral" if UNILATERAL.search(name) else "bilateral",
        }
        for key, allowed in (("force", FORCE), ("mechanic", MECHANIC)):
            value = record.get(key)
            if value is not None and known(allowed, key, value):
                movement[key] = value
        report.classifications[movement["classification"]] += 1
        out.append(movement)
    return out, report


def import_file(source: Path, out: Path) -> ImportReport:
    """Convert ``source`` (free-exercise-db's exercises.json) into ``out``; fails on unknowns."""
    # a regular file only, read once and bounded (a FIFO or a device is refused by its kind)
    raw = read_bounded(source, MAX_CATALOGUE_BYTES, "the catalogue", DataFileUnreadable,
                       then="nothing was written")
    if raw is None:
        raise DataFileMissing(f"{shown_path(source)}: no such file (free-exercise-db's "
                              "exercises.json)")
    try:
        records = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise DataFileError(f"{shown_path(source)}: not valid JSON ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "name" in r for r in records):
        raise DataFileError(f"{shown_path(source)}: expected free-exercise-db's array of exercises")
    shapes = [f"#{i} {shown(str(r.get('name')), 60)}: {p}" for i, r in enumerate(records)
              for p in malformed(r)]
    if shapes:
        more = f"; and {len(shapes) - SHOWN_SHAPES} more" if len(shapes) > SHOWN_SHAPES else ""
        raise DataFileError(f"{shown_path(source)}: {len(shapes)} field(s) not of "
                            f"free-exercise-db's shape (nothing written): "
                            f"{'; '.join(shapes[:SHOWN_SHAPES])}{more}")
    movements, report = convert(records)
    if report.unknown:
        detail = "; ".join(f"{kind}: " + ", ".join(f"{v!r} ({n})" for v, n in values.items())
                           for kind, values in report.unknown.items())
        raise DataFileError(
            f"{shown_path(source)}: values the mapping does not know (nothing written; extend "
            f"movelib/source/importers/free_exercise_db.py): {detail}"
        )
    write_atomically(out, (json.dumps(movements, indent=1, ensure_ascii=False) + "\n").encode())
    return report
