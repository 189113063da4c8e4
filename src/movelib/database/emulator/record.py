"""Which backend serves a profile, as ``db.up`` left it: one small file per profile.

``auto`` used to guess each time (the backend holding the profile's data, else docker when an
engine answers and has the image): after ``db.up --backend docker --image X`` over an older
embedded data folder, ``db.status``, ``db.down`` and every task that starts an emulator took the
embedded one. ``db.up`` (and an auto-start) now records the backend and image it used in
``<emulator dir>/<profile>.backend``; ``auto`` follows the record, and ``db.down --purge`` of that
backend removes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recorded:
    backend: str  # embedded | docker
    image: str = ""  # docker: the image db.up used
    by: str = "db.up"  # db.up, or AUTO_START: a task that found it stopped

    def describe(self, path: Path) -> str:
        image = f" ({self.image})" if self.image else ""
        who = "db.up started it" if self.by == "db.up" else "started by a task that found it stopped"
        return f"{who} on {self.backend}{image} (recorded in {path.parent.name}/{path.name})"


AUTO_START = "auto-start"


def record_path(base_dir: Path, profile: str) -> Path:
    return base_dir / f"{profile}.backend"


def recorded(base_dir: Path, profile: str) -> Recorded | None:
    """The backend ``db.up`` last used for ``profile``, or None (never, or unreadable)."""
    try:
        data = json.loads(record_path(base_dir, profile).read_text(encoding="utf-8"))
        backend = data["backend"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if backend not in ("embedded", "docker"):
        return None
    by = data.get("by")
    return Recorded(backend, str(data.get("image") or ""), by if by == AUTO_START else "db.up")


def record(base_dir: Path, profile: str, backend: str, image: str = "", by: str = "db.up") -> None:
    """Remember that ``backend`` (with ``image``) serves ``profile``, started ``by``."""
    base_dir.mkdir(parents=True, exist_ok=True)
    data = {"backend": backend, **({"image": image} if backend == "docker" and image else {}),
            **({"by": by} if by != "db.up" else {})}
    path = record_path(base_dir, profile)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    temp.replace(path)


def forget(base_dir: Path, profile: str, backend: str) -> None:
    """Drop the record when it names ``backend`` (its data was just purged)."""
    found = recorded(base_dir, profile)
    if found is not None and found.backend == backend:
        record_path(base_dir, profile).unlink(missing_ok=True)
