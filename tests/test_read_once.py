"""Each artifact is read once: what the restore trusts is exactly what it checked and loads.

A release engineer restores signed release A into a production-labelled database while another
process swaps A's files for forged release B's (a consistent forgery the database itself would
accept: library, document and every hash edited together; signed by a key nobody trusts). The
swap happens at an injection point between two reads (``movelib.ship.restore._checkpoint``), not by a
timing race: every point, every file. Each run is refused with the target unchanged, or restores
A's signed content; never B's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    ROOT,
    SIGNER,
    Server,
    allowed_signers,
    database,
    make_key,
    pin_key,
    public,
    seed,
    settings,
    table_hashes,
)
from test_content_truth import rehashed
from test_forged_dumps import recompute

import movelib.ship.restore
from movelib.base.errors import MovelibError
from movelib.database.guard import Permission
from movelib.database.migrations import migrate
from movelib.database.target import Target, target_from_dsn
from movelib.ship.dump import dump
from movelib.ship.manifest import manifest_path
from movelib.ship.restore import run_restore
from movelib.ship.restore_plan import RestoreOptions
from movelib.ship.signing import sign_file, signature_path

MIGRATIONS = ROOT / "migrations"
CHECKPOINTS = ["manifest read", "dump checked", "signature read", "target planned"]
SWAPS = ["manifest", "signature", "dump", "manifest+signature", "all three"]


@dataclass(frozen=True)
class Releases:
    trusted: Path  # the key production pins
    signed: Path  # A: the dump, its manifest and a .sig by the trusted key
    forged: Path  # B: a consistent forgery, its manifest recomputed, signed by an untrusted key
    allowed: Path
    library: str  # A's movement_library content, as table_hashes gives it


@pytest.fixture(scope="module")
def releases(ssh_keygen: None, pg18: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    base = tmp_path_factory.mktemp("releases")
    trusted, stranger = make_key(base / "keys", "trusted"), make_key(base / "keys", "stranger")
    allowed = allowed_signers(base / "keys", f"{SIGNER} {public(trusted)}")
    with database(pg18, "movelib_template") as name:
        source = target_from_dsn(pg18.dsn(name), "--dsn")
        seed(source)
        a = dump(source, MIGRATIONS, base / "a", release="v1.0", update_latest=False).path
        library = table_hashes(source)["movement_library"]
    sign_file(manifest_path(a), trusted)
    b = base / "b" / a.name
    b.parent.mkdir()
    b.write_bytes(rehashed("Back Squat (PWNED)")(a.read_bytes()))
    shutil.copyfile(manifest_path(a), manifest_path(b))
    recompute(b)
    sign_file(manifest_path(b), stranger)
    yield Releases(trusted, a, b, allowed, library)


@pytest.fixture
def production(pg18: Server, releases: Releases) -> Iterator[Target]:
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        migrate(target, MIGRATIONS, environment="production")
        pin_key(target, releases.trusted)
        yield target


def _files(dump_file: Path, what: str) -> list[Path]:
    manifest = manifest_path(dump_file)
    chosen = {"manifest": [manifest], "signature": [signature_path(manifest)], "dump": [dump_file],
              "manifest+signature": [manifest, signature_path(manifest)],
              "all three": [dump_file, manifest, signature_path(manifest)]}
    return chosen[what]


@pytest.mark.parametrize("swap", SWAPS)
@pytest.mark.parametrize("point", CHECKPOINTS)
def test_files_swapped_between_reads_are_refused_or_change_nothing(
        releases: Releases, production: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        point: str, swap: str) -> None:
    here = tmp_path / releases.signed.name
    for source in _files(releases.signed, "all three"):
        shutil.copyfile(source, tmp_path / source.name)
    swapped: list[str] = []

    def checkpoint(step: str) -> None:
        if step == point:
            for theirs in _files(releases.forged, swap):
                shutil.copyfile(theirs, tmp_path / theirs.name)
            swapped.append(step)

    monkeypatch.setattr(movelib.ship.restore, "_checkpoint", checkpoint)
    config = settings()
    config = type(config)(**{**config.__dict__, "allowed_signers": releases.allowed})
    before = table_hashes(production)
    options = RestoreOptions(dump_file=here, assume_yes=True,
                             permission=Permission(allow_protected=True, confirm=production.dbname))
    lines: list[str] = []
    try:
        run_restore(config, production, options, lines.append, lambda _q: None)
    except MovelibError as exc:
        assert swapped == [point]
        assert table_hashes(production) == before, f"refused ({exc}) but the target changed"
        return
    assert swapped == [point]
    after = table_hashes(production)
    assert after["movement_library"] == releases.library, "B's content was restored"
    assert f"signature: good, by {SIGNER}" in "\n".join(lines)


def test_the_manifest_is_read_once_and_the_dump_hashed_as_it_loads(releases: Releases, production: Target,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any swap, each file is opened the times the design says: the manifest and the
    signature once; the dump once in the checks before any connection (its sha256 computed in
    the pass that checks its lines), then once as it loads."""
    import builtins
    import io
    import os

    for source in _files(releases.signed, "all three"):
        shutil.copyfile(source, tmp_path / source.name)
    here = tmp_path / releases.signed.name
    opened: list[str] = []
    real_open, real_os_open, real_io_open = builtins.open, os.open, io.open

    def count(path: object) -> bool:
        name = Path(str(path)).name if isinstance(path, (str, os.PathLike)) else ""
        if name.startswith(here.name.removesuffix(".sql")):
            opened.append(name)
        return True

    monkeypatch.setattr(os, "open", lambda path, *a, **k: count(path) and real_os_open(path, *a, **k))
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: count(path) and real_open(path, *a, **k))
    monkeypatch.setattr(io, "open", lambda path, *a, **k: count(path) and real_io_open(path, *a, **k))
    config = settings()
    config = type(config)(**{**config.__dict__, "allowed_signers": releases.allowed})
    run_restore(config, production, RestoreOptions(dump_file=here, assume_yes=True,
                permission=Permission(allow_protected=True, confirm=production.dbname)),
                lambda _line: None, lambda _q: None)
    manifest, signature = manifest_path(here).name, signature_path(manifest_path(here)).name
    assert opened.count(manifest) == 1, opened
    assert opened.count(signature) == 1, opened
    assert opened.count(here.name) == 2, opened  # every line and the sha256 (before connecting), load


def test_the_reported_attack_swapping_the_manifest_back_and_forth_is_refused(
        releases: Releases, production: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As reported: B's dump and manifest are checked, A's manifest and signature are put in
    place for the signature check, B's manifest back for the comparison. With three reads of the
    manifest this restored B as "signature: good"; with one, the signature is checked over B's
    bytes and does not match."""
    here = tmp_path / releases.signed.name
    for source in _files(releases.forged, "dump") + _files(releases.forged, "manifest"):
        shutil.copyfile(source, tmp_path / source.name)
    plays = {"dump checked": _files(releases.signed, "manifest+signature"),
             "signature read": _files(releases.forged, "manifest")}

    def checkpoint(step: str) -> None:
        for source in plays.get(step, []):
            shutil.copyfile(source, tmp_path / source.name)

    monkeypatch.setattr(movelib.ship.restore, "_checkpoint", checkpoint)
    config = settings()
    config = type(config)(**{**config.__dict__, "allowed_signers": releases.allowed})
    before = table_hashes(production)
    with pytest.raises(MovelibError, match="does not match the manifest"):
        run_restore(config, production, RestoreOptions(dump_file=here, assume_yes=True,
                    permission=Permission(allow_protected=True, confirm=production.dbname)),
                    lambda _line: None, lambda _q: None)
    assert table_hashes(production) == before
