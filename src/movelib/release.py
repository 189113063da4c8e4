"""``inv release``: a versioned seed dump under ``releases/<version>/``, optionally tagged."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .dump import DumpResult, dump
from .errors import ReleaseError
from .target import Target

VERSION = re.compile(r"^v\d+(\.\d+){0,2}([-+][0-9A-Za-z.]+)?$")


@dataclass(frozen=True)
class ReleaseResult:
    dump: DumpResult
    tag: str | None
    commit: str | None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def tag_name(version: str) -> str:
    return f"{version}-seed"


def check_release(root: Path, version: str, *, tag: bool) -> Path:
    """Refuse a bad version, an existing release, or (with ``tag``) a dirty tree or taken tag."""
    if not VERSION.match(version):
        raise ReleaseError(f"version {version!r} is not like v1.0, v1.2.3 or v2.0-rc1")
    folder = root / "releases" / version
    if folder.exists() and any(folder.glob("movements_seed_*.sql")):
        raise ReleaseError(f"{folder} already holds a dump: a release is never overwritten")
    if tag:
        if _git(root, "rev-parse", "--git-dir").returncode != 0:
            raise ReleaseError(f"--tag needs a git checkout; {root} is not one")
        if _git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag_name(version)}").returncode == 0:
            raise ReleaseError(f"tag {tag_name(version)} already exists; choose another version")
        dirty = _git(root, "status", "--porcelain").stdout.strip()
        if dirty:
            raise ReleaseError(
                "the working tree has uncommitted changes; commit or stash them before tagging "
                f"a release:\n{dirty}"
            )
    return folder


def release(target: Target, root: Path, migrations_dir: Path, version: str, *,
            tag: bool = False) -> ReleaseResult:
    folder = check_release(root, version, tag=tag)
    result = dump(target, migrations_dir, folder, release=version, update_latest=False)
    if not tag:
        return ReleaseResult(result, None, None)
    name = tag_name(version)
    files = [str(p.relative_to(root)) for p in (result.path, result.manifest_path)]
    steps = [
        ("add", "-f", "--", *files),
        ("commit", "-q", "-m", f"Movement library seed {version}", "--", *files),
        ("tag", "-a", name, "-m", f"Movement library {version}"),
    ]
    for step in steps:
        proc = _git(root, *step)
        if proc.returncode != 0:
            raise ReleaseError(f"git {step[0]} failed: {proc.stderr.strip()}")
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    return ReleaseResult(result, name, commit)
