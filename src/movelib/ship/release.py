"""``inv release``: a versioned seed dump under ``releases/<version>/``, optionally tagged."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.defaults import RELEASES_DIR
from ..base.errors import ReleaseError, ReleaseUsage
from ..base.files import write_atomically
from ..base.text import shown, shown_path
from ..database.target import Target
from .dump import DumpResult, dump
from .manifest import DUMP_PREFIX, MANIFEST_SUFFIX, Manifest, manifest_path

if TYPE_CHECKING:
    from .sshkeys import PublicKey

# A release version, in its one spelling: v1, v1.2, v1.2.3, optionally a pre-release (-rc1).
# ASCII digits only (\d would take any script's digits) and no leading zero, so that no two
# spellings name one version (v01.10 is v1.10); no build metadata (v1.0+b2 would be v1.0 under
# another name). schemas/manifest.schema.json says the same (a test compares them). \A and \Z
# (not ^ and $, which let re.match take 'v1.0\n'): no caller accepts more than the whole string.
_NUMBER = "(?:0|[1-9][0-9]*)"
VERSION = re.compile(rf"\Av{_NUMBER}(?:\.{_NUMBER}){{0,2}}(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?\Z")


def is_version(text: str) -> bool:
    """Whether ``text`` is, whole, a release version (``v1.0\n`` is not)."""
    return VERSION.fullmatch(text) is not None


def check_version(version: str) -> None:
    """:class:`ReleaseUsage` unless ``version`` is a release version."""
    if not is_version(version):
        raise ReleaseUsage(f"version {shown(version, 40)} is not like v1.0, v1.2.3 or v2.0-rc1 (ASCII "
                           "digits without leading zeros; no +build)")


@dataclass(frozen=True)
class Signed:
    """The manifest's signature: who made it, and whether allowed_signers knows them yet."""

    path: Path
    key: PublicKey
    principals: list[str]


@dataclass(frozen=True)
class ReleaseResult:
    dump: DumpResult
    tag: str | None
    commit: str | None
    signed: Signed | None = None

    def lines(self, allowed_signers: Path) -> list[str]:
        lines = self.dump.lines()
        if self.signed:
            signer = (f"allowed signer: {', '.join(self.signed.principals)}"
                      if self.signed.principals else
                      f"this key is not in {shown_path(allowed_signers)} yet: add it there for "
                      "staging and local restores; a production database accepts it once it is "
                      "pinned there (`inv trust.pin KEY.pub --principal NAME`)")
            lines.append(f"  signature: {self.signed.path.name} ({self.signed.key.describe()}); "
                         f"{signer}")
        if self.tag:
            kind = "signed tag" if self.signed else "tag"
            lines.append(f"{kind}: {self.tag} on {self.commit} (push with `git push --follow-tags`)")
        return lines


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def release_folder(root: Path, version: str) -> Path:
    """Where release ``version`` lives: ``<root>/releases/<version>/``."""
    return root / RELEASES_DIR / version


def tag_name(version: str) -> str:
    return f"{version}-seed"


def proven_tag(root: Path, manifest: Manifest, manifest_bytes: bytes) -> str | None:
    """The tag of ``manifest``'s release, only when ``root``'s git repository has it and the
    tagged commit holds exactly ``manifest_bytes`` as that release's manifest; else None (no
    repository, no git, no such tag, or a tag of other content)."""
    version = manifest.release
    if not version or not is_version(version):
        return None
    name = tag_name(version)
    blob = f"refs/tags/{name}:{RELEASES_DIR}/{version}/{manifest_path(Path(manifest.dump_file)).name}"
    try:
        proc = subprocess.run(["git", "show", blob], cwd=root, capture_output=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return name if proc.returncode == 0 and proc.stdout == manifest_bytes else None


def check_release(root: Path, version: str, *, tag: bool, sign_key: Path | None = None) -> Path:
    """Refuse a bad version, an existing release, an unusable signing key, or (with ``tag``) a
    dirty tree or taken tag: all before anything is written."""
    if sign_key is not None:
        from .signing import check_signing_key

        check_signing_key(sign_key)
    check_version(version)
    folder = release_folder(root, version)
    if folder.exists() and any(folder.glob(f"{DUMP_PREFIX}*.sql*")):
        raise ReleaseError(f"{shown_path(folder)} already holds a dump: a release is never overwritten")
    if tag:
        if _git(root, "rev-parse", "--git-dir").returncode != 0:
            raise ReleaseError(f"--tag needs a git checkout; {shown_path(root)} is not one")
        if _git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag_name(version)}").returncode == 0:
            raise ReleaseError(f"tag {tag_name(version)} already exists; choose another version")
        dirty = _git(root, "status", "--porcelain").stdout.strip()
        if dirty:
            raise ReleaseError(
                "the working tree has uncommitted changes; commit or stash them before tagging "
                f"a release:\n{dirty}"
            )
    return folder


def _compressed(result: DumpResult) -> DumpResult:
    """The release's dump as it ships: ``.sql.gz``, its manifest recording both forms (the SQL
    is removed; ``gunzip -c`` gives it back byte for byte)."""
    from .compress import compress

    try:
        shipped = compress(result.path)
        manifest = dataclasses.replace(result.manifest, compressed=shipped)
        write_atomically(result.manifest_path, manifest.to_json().encode())
    except BaseException:
        for written in (result.path, result.path.with_name(result.path.name + ".gz"),
                        result.manifest_path):
            written.unlink(missing_ok=True)
        raise
    result.path.unlink()
    return DumpResult(result.path.with_name(str(shipped["file"])), result.manifest_path, manifest,
                      None)


def _fits_git(root: Path, result: DumpResult) -> None:
    """``--tag`` commits the dump: refused (the release removed) above the size a file in git
    should have, unless Git LFS tracks it there."""
    from .compress import GIT_FILE_LIMIT

    size = result.path.stat().st_size
    relative = str(result.path.relative_to(root))
    lfs = _git(root, "check-attr", "filter", "--", relative).stdout.strip().endswith(": lfs")
    if size <= GIT_FILE_LIMIT or lfs:
        return
    for written in (result.path, result.manifest_path):
        written.unlink(missing_ok=True)
    raise ReleaseError(
        f"{relative} is {size / 1024 / 1024:.0f} MB compressed, more than the "
        f"{GIT_FILE_LIMIT // 1024 // 1024} MB a file committed to git should be (GitHub refuses "
        "100 MB); nothing was written. Cut the release without --tag and ship the dump as a "
        "GitHub release asset or an Actions artifact (docs/releases.md), or let Git LFS track "
        "releases/** (`git lfs track 'releases/**/*.sql.gz'`)")


def _sign(result: DumpResult, key: Path, allowed_signers: Path | None) -> Signed:
    """Sign the manifest (it carries the dump's sha256); a failure removes the whole release,
    so that it can be cut again rather than being refused as already there."""
    from .allowed_signers import load_allowed_signers
    from .signing import sign_file
    from .sshkeys import Signature

    try:
        path = sign_file(result.manifest_path, key)
    except BaseException:
        for written in (result.path, result.manifest_path):
            written.unlink(missing_ok=True)
        raise
    signature = Signature.parse(path.read_text(encoding="utf-8"), str(path))
    signers = load_allowed_signers(allowed_signers) if allowed_signers else []
    return Signed(path, signature.key, [s.principals for s in signers
                                           if s.key == signature.key and not s.cert_authority])


def release(target: Target, root: Path, migrations_dir: Path, version: str, *,
            tag: bool = False, sign_key: Path | None = None,
            allowed_signers: Path | None = None) -> ReleaseResult:
    """Dump into ``releases/<version>/``; with ``sign_key`` write ``<manifest>.sig``
    (namespace movelib-release) and, with ``tag``, sign the tag with the same key."""
    folder = check_release(root, version, tag=tag, sign_key=sign_key)
    result = _compressed(dump(target, migrations_dir, folder, release=version, update_latest=False))
    if tag:
        _fits_git(root, result)
    signed = _sign(result, sign_key, allowed_signers) if sign_key else None
    if not tag:
        return ReleaseResult(result, None, None, signed)
    name = tag_name(version)
    written = [result.path, result.manifest_path, *([signed.path] if signed else [])]
    files = [str(p.relative_to(root)) for p in written]
    # git signs the tag through ssh-keygen too: gpg.format ssh, user.signingkey = the key file
    tagging = (["-c", "gpg.format=ssh", "-c", f"user.signingkey={sign_key}", "tag", "-s"]
               if sign_key else ["tag", "-a"])
    steps = [
        ("add", ["add", "-f", "--", *files]),
        ("commit", ["commit", "-q", "-m", f"Movement library seed {version}", "--", *files]),
        ("tag", [*tagging, name, "-m", f"Movement library {version}"]),
    ]
    for step, args in steps:
        proc = _git(root, *args)
        if proc.returncode != 0:
            raise ReleaseError(f"git {step} failed: {proc.stderr.strip()}")
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    return ReleaseResult(result, name, commit, signed)


@dataclass(frozen=True)
class Cosigned:
    """``inv cosign``: the signature added, and every signer the release now carries."""

    signed: Signed
    manifest: Path
    keys: list[PublicKey]

    def lines(self, allowed_signers: Path) -> list[str]:
        who = (f"allowed signer: {', '.join(self.signed.principals)}" if self.signed.principals
               else f"this key is not in {shown_path(allowed_signers)} yet: add it there for "
                    "staging and local restores; a production database counts it once it is "
                    "pinned there (`inv trust.pin KEY.pub --principal NAME`)")
        return [f"cosigned: {self.signed.path.name} ({self.signed.key.describe()}); {who}",
                f"  {self.manifest.name} now carries {len(self.keys)} signature(s), by "
                + ", ".join(f"{k.short_type} {k.fingerprint}" for k in self.keys),
                f"  check one: ssh-keygen -Y verify -f <allowed_signers> -I <principal> -n "
                f"movelib-release -s {self.signed.path.name} < {self.manifest.name}"]


def release_manifest_path(root: Path, version: str) -> Path:
    """The one ``*.manifest.json`` of ``releases/<version>/``."""
    check_version(version)
    folder = release_folder(root, version)
    found = sorted(folder.glob(f"*{MANIFEST_SUFFIX}")) if folder.is_dir() else []
    if len(found) != 1:
        what = "no manifest" if not found else f"{len(found)} manifests"
        raise ReleaseUsage(f"release {version}: {what} in {shown_path(folder)} (expected one, as `inv "
                           "release` writes)")
    return found[0]


def cosign(root: Path, version: str, key: Path, allowed_signers: Path | None = None) -> Cosigned:
    """Add ``key``'s signature to release ``version``: another standard SSH signature over the
    same manifest bytes, in the next free ``<manifest>.sig.N``. A key that already signed the
    release is refused (it would count once anyway)."""
    from .allowed_signers import load_allowed_signers
    from .quorum import next_signature_path, signature_files
    from .signing import check_signing_key, read_signature_file, sign_file
    from .sshkeys import Signature

    check_signing_key(key)
    manifest = release_manifest_path(root, version)
    existing = []
    for path in signature_files(manifest):
        data = read_signature_file(path)
        if data is not None:
            existing.append(Signature.parse(data, str(path)).key)
    if not existing:
        raise ReleaseError(f"release {version} is not signed yet: the first signature comes with "
                           f"`inv release {version} --sign KEY`")
    out = next_signature_path(manifest)
    sign_file(manifest, key, out=out)
    added = Signature.parse(out.read_bytes(), str(out)).key
    if added in existing:
        out.unlink()
        raise ReleaseError(f"{key} ({added.describe()}) has already signed release {version}; a "
                           "second signature by one key counts once: ask another signer")
    signers = load_allowed_signers(allowed_signers) if allowed_signers else []
    signed = Signed(out, added, [s.principals for s in signers
                                 if s.key == added and not s.cert_authority])
    return Cosigned(signed, manifest, [*existing, added])

