"""Deterministic synthetic movement files, for tests and benchmarks at any size."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..base.defaults import SYNTH_SEED
from ..base.files import atomic_file

BASES = [
    ("squat", "Squat", ["quadriceps", "glutes"], ["hamstrings", "adductors"], "push"),
    ("hinge", "Deadlift", ["hamstrings", "glutes"], ["lower-back", "traps"], "pull"),
    ("lunge", "Lunge", ["quadriceps", "glutes"], ["adductors", "calves"], "push"),
    ("horizontal-push", "Press", ["chest"], ["triceps", "shoulders"], "push"),
    ("vertical-push", "Overhead Press", ["shoulders"], ["triceps", "traps"], "push"),
    ("horizontal-pull", "Row", ["middle-back", "lats"], ["biceps", "forearms"], "pull"),
    ("vertical-pull", "Pulldown", ["lats"], ["biceps", "middle-back"], "pull"),
    ("carry", "Carry", ["forearms", "traps"], ["abdominals", "obliques"], "static"),
    ("core", "Plank", ["abdominals"], ["obliques", "hip-flexors"], "static"),
    ("rotation", "Woodchop", ["obliques"], ["abdominals", "shoulders"], "pull"),
    ("plyometric", "Jump", ["quadriceps", "calves"], ["glutes", "hamstrings"], "push"),
    ("isolation", "Curl", ["biceps"], ["forearms"], "pull"),
]
MODIFIERS = ["", "Paused", "Tempo", "Deficit", "Banded", "Single-Arm", "Single-Leg", "Alternating",
             "Incline", "Decline", "Wide-Grip", "Close-Grip", "Isometric", "Eccentric", "Speed"]
EQUIPMENT = ["barbell", "dumbbell", "kettlebell", "bodyweight", "machine", "cable", "band",
             "medicine-ball", "trap-bar", "sled", "rings", "box", "bench", "rack"]
LEVELS = ["beginner", "intermediate", "advanced"]
STEPS = [
    "Set up with a braced trunk and a neutral spine.",
    "Take the weight out under control and find your starting position.",
    "Move through the full range you own without losing position.",
    "Pause briefly where the movement is hardest.",
    "Return to the start under control and reset before the next repetition.",
    "Breathe out through the hardest part of the repetition.",
]
CUES = ["Brace", "Stay tall", "Control the descent", "Drive hard", "Own the range", "Exhale up"]


def movement(i: int, rng: random.Random) -> dict[str, Any]:
    classification, base, primary, secondary, force = BASES[i % len(BASES)]
    modifier = MODIFIERS[(i // len(BASES)) % len(MODIFIERS)]
    name = f"{modifier} {rng.choice(['Barbell', 'Dumbbell', 'Cable', 'Band', 'Kettlebell'])} {base}".strip()
    record: dict[str, Any] = {
        "slug": f"{'-'.join(name.lower().replace('-', ' ').split())}-{i}",
        "name": f"{name} {i}",
        "classification": classification,
        "equipment": sorted(set(rng.sample(EQUIPMENT, rng.randint(1, 3)))),
        "primary_muscles": list(primary),
        "secondary_muscles": rng.sample(secondary, rng.randint(0, len(secondary))),
        "level": LEVELS[rng.randrange(3)],
        "instructions": rng.sample(STEPS, rng.randint(2, 5)),
        "laterality": "alternating" if modifier == "Alternating"
        else "unilateral" if modifier.startswith("Single") else "bilateral",
        "force": force,
        "mechanic": "isolation" if classification == "isolation" else "compound",
    }
    if rng.random() < 0.5:
        record["aliases"] = [f"{base} Variation {i}"]
    if rng.random() < 0.7:
        record["coaching_cues"] = rng.sample(CUES, rng.randint(1, 3))
    return record


def write_synthetic(count: int, out: Path, seed: int = SYNTH_SEED) -> None:
    """Write ``count`` valid, varied movements to ``out``, the same for the same seed."""
    rng = random.Random(seed)
    with atomic_file(out) as handle:
        handle.write(b"[\n")
        for i in range(count):
            line = json.dumps(movement(i, rng), ensure_ascii=False)
            handle.write((line + (",\n" if i < count - 1 else "\n")).encode())
        handle.write(b"]\n")
