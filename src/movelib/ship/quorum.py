"""Which of a release's signatures count, and whether they are enough.

A release carries one or more standard SSH signatures over the same manifest bytes:
``<manifest>.sig`` (``inv release --sign``), then ``<manifest>.sig.2``, ``.sig.3``... (``inv
cosign``). Why this layout: the first stays where ssh-keygen users, git and earlier movelib look
for it, so a one-signer release is unchanged; each file is a plain SSHSIG file that
``ssh-keygen -Y verify -s FILE`` checks as it is; and they sort and glob beside the manifest in
``releases/<version>/`` (a folder of their own would split a release's files and need rules of
its own in ``.gitattributes``).

Each signature file is read once (:func:`read_presented`), and before any connection each must
be sound: made for namespace ``movelib-release`` over exactly the manifest bytes the restore
trusts. Who signed is then judged against the target's trust source (:func:`decide`):

* a production-labelled target trusts only the signers pinned in it (:mod:`movelib.ship.trust`),
  whatever allowed_signers file the environment or configuration names; it needs signatures by
  at least its threshold's number of distinct signers (one key, or one principal, counts once);
  a signature by a key it has not pinned is named and not counted;
* any other target reads the allowed_signers file as before: a signed release needs a
  signature by an allowed signer (one that is not is refused, as a lone signature always was;
  beside a good one it is named and not counted), and ``--require-signature`` asks for one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import AllowedSignersUnreadable, MovelibError, TrustRefused, UnsignedRelease
from ..base.text import shown, shown_path
from ..database.guard import PROTECTED
from ..database.target import Target
from .allowed_signers import AllowedSigners, read_allowed_signers
from .signing import check_sound, read_signature_file, signature_path, verify
from .sshkeys import PublicKey, Signature
from .trust import PinnedTrust, how_to_pin

MAX_SIGNATURES = 16
_COSIGNATURE = re.compile(r"\.sig\.([2-9]|[1-9][0-9])")


def signature_files(manifest: Path) -> list[Path]:
    """``<manifest>.sig`` and every ``<manifest>.sig.N`` (N from 2) beside it, in order."""
    extra: list[tuple[int, Path]] = []
    try:
        entries = list(os.scandir(manifest.parent))
    except OSError:
        entries = []
    for entry in entries:
        rest = entry.name[len(manifest.name):] if entry.name.startswith(manifest.name) else ""
        found = _COSIGNATURE.fullmatch(rest)
        if found:
            extra.append((int(found.group(1)), manifest.parent / entry.name))
    return [signature_path(manifest), *(p for _, p in sorted(extra))]


def next_signature_path(manifest: Path) -> Path:
    """Where the next signature of ``manifest`` goes: ``.sig`` first, then ``.sig.N``."""
    files = [p for p in signature_files(manifest) if p.exists()]
    if not files:
        return signature_path(manifest)
    if len(files) >= MAX_SIGNATURES:
        raise TrustRefused(f"{manifest.name} already has {len(files)} signatures, the most a "
                           "release carries")
    numbers = [int(m.group(1)) for p in files
               if (m := _COSIGNATURE.fullmatch(p.name[len(manifest.name):]))]
    return manifest.with_name(f"{manifest.name}.sig.{max([1, *numbers]) + 1}")


@dataclass(frozen=True)
class Presented:
    """A release's signatures as read (each file once) and found sound, and the
    allowed_signers file as read (once), for a target that is not production."""

    manifest_name: str
    manifest_bytes: bytes = b""
    signatures: tuple[tuple[str, Signature], ...] = ()  # (file, signature)
    required: bool = False  # --require-signature
    allowed: AllowedSigners | None = None
    allowed_error: MovelibError | None = None  # the file could not be read: raised if used
    allowed_path: Path | None = None


def read_presented(manifest: Path, manifest_bytes: bytes, allowed_signers: Path, *,
                   required: bool) -> Presented:
    """Read every signature file of ``manifest`` once and check each is sound over
    ``manifest_bytes`` (no connection). Unsigned with ``required`` is refused here."""
    files = signature_files(manifest)
    if len(files) > MAX_SIGNATURES:
        raise TrustRefused(f"{manifest.name} has {len(files)} signature files, more than the "
                           f"{MAX_SIGNATURES} a release carries; refusing the dump")
    signatures = []
    for path in files:
        data = read_signature_file(path)
        if data is None:
            continue
        parsed = Signature.parse(data, str(path))
        check_sound(manifest_bytes, parsed, where=str(path))
        signatures.append((str(path), parsed))
    if not signatures and required:
        raise UnsignedRelease(
            f"{manifest.name} is unsigned (no {signature_path(manifest)}), and this restore needs "
            "a release signed by an allowed signer (`inv release --sign KEY`, "
            f"{shown_path(allowed_signers)}); "
            "refusing the dump")
    allowed, error = None, None
    if signatures:
        try:
            allowed = read_allowed_signers(allowed_signers)
        except AllowedSignersUnreadable as exc:
            error = exc
    return Presented(manifest.name, manifest_bytes, tuple(signatures), required, allowed, error,
                     allowed_signers)


@dataclass(frozen=True)
class Signer:
    """A signature that counts: who, with which key, vouched for by which trust source."""

    principal: str
    key: PublicKey
    source: str  # "pinned in athlete_planning" or "from .movelib/allowed_signers"
    file: str

    def describe(self) -> str:
        return (f"good, by {shown(self.principal)} ({self.key.short_type} "
                f"{self.key.fingerprint}), {self.source}")


@dataclass(frozen=True)
class Verdict:
    """The signatures that count, and the trust source that decided."""

    trust: str  # "2 signers pinned in athlete_planning, threshold 2", or the file
    signers: tuple[Signer, ...] = ()
    not_counted: tuple[str, ...] = field(default_factory=tuple)

    @property
    def signed(self) -> bool:
        return bool(self.signers)

    def lines(self) -> list[str]:
        """The signatures, one line each (the trust source is said before, by the caller)."""
        lines = [f"signature: {s.describe()} ({Path(s.file).name})" if len(self.signers) > 1
                  else f"signature: {s.describe()}" for s in self.signers]
        lines += [f"signature: {note}" for note in self.not_counted]
        if not self.signers and not self.not_counted:
            lines.append("signature: none")
        return lines


def trust_source(presented: Presented, label: str | None, pinned: PinnedTrust | None) -> str:
    """Whom the target trusts, in words: what ``trust:`` says before any verdict."""
    if label in PROTECTED:
        if pinned is None or not pinned.installed:
            return "nothing pinned (the database predates migration 0005.movement-trust)"
        return pinned.describe()
    where = shown_path(presented.allowed_path) if presented.allowed_path else "(none)"
    return f"the allowed_signers file {where}"


def decide(presented: Presented, label: str | None, pinned: PinnedTrust | None,
           target: Target) -> Verdict:
    """The signers that count for a restore into ``target`` (labelled ``label``), or the
    refusal: pinned trust for production (``pinned``, read from the target), the file else."""
    if label in PROTECTED:
        return _pinned(presented, pinned or PinnedTrust(target.dbname, installed=False), target,
                       label)
    source = trust_source(presented, label, pinned)
    if not presented.signatures:
        return Verdict(source)
    if presented.allowed_error is not None:
        raise presented.allowed_error
    assert presented.allowed is not None
    counted: dict[str, Signer] = {}
    refused: list[MovelibError] = []
    for where, signature in presented.signatures:
        try:
            verified = verify(presented.manifest_bytes, signature, presented.allowed, where=where)
        except MovelibError as exc:
            refused.append(exc)
            continue
        counted.setdefault(verified.principal, Signer(
            verified.principal, verified.key, f"from {shown(str(verified.allowed_signers))}", where))
    if not counted:  # as with one signature: it must be by an allowed signer
        raise refused[0]
    return Verdict(source, tuple(counted.values()),
                   tuple(f"not counted: {_reason(exc)}" for exc in refused))


def _reason(exc: MovelibError) -> str:
    """A refused signature's message as a note beside good ones: the refusal it would be alone
    ("; refusing the dump") is not what happens."""
    return str(exc).removesuffix("; refusing the dump").removesuffix(", refusing the dump")


def refuse_before_starting(target: Target, presented: Presented) -> None:
    """Before a restore starts a stopped emulator (``target``'s profile): the allowed_signers
    file's verdict, which decides for every target not labelled production. A refusal stops
    here, the emulator left stopped; only a production label (read once it runs) could change
    it, by its pinned signers, and the message says how to ask that."""
    try:
        decide(presented, None, None, target)
    except MovelibError as exc:
        exc.args = (f"{exc}\n(checked before starting {target.describe()}'s emulator, as the "
                    "allowed_signers file decides for a staging or local database; if that "
                    "database is labelled production its pinned signers decide instead: start it "
                    f"with `inv db.up{target.again()}` and run the restore again)",)
        raise


def _pinned(presented: Presented, trust: PinnedTrust, target: Target, label: str | None) -> Verdict:
    where = f"{target.describe()} is labelled {label}"
    if not trust.installed:
        raise TrustRefused(
            f"{where} and holds no pinned trust (it predates migration 0005.movement-trust): it "
            f"accepts no release. Run `inv migrate` there (--allow-protected), then {how_to_pin(target)}; "
            "refusing the dump")
    if not trust.log.ok:
        raise TrustRefused(f"{where}, and {trust.log.summary()}; refusing the dump")
    if not trust.signers:
        raise TrustRefused(
            f"{where} and nothing is pinned in {shown(trust.database)}: it accepts no release "
            f"until its signers are pinned; {how_to_pin(target)}; refusing the dump")
    if not presented.signatures:
        raise UnsignedRelease(
            f"{presented.manifest_name} is unsigned, and {where}: only a release signed by the "
            f"signers pinned there ({trust.describe()}) may be restored; refusing the dump")
    counted: dict[str, Signer] = {}
    strangers: list[str] = []
    for file, signature in presented.signatures:
        pinned = next((p for p in trust.signers if p.key == signature.key), None)
        if pinned is None:
            strangers.append(f"{Path(file).name} is by {signature.key.short_type} "
                             f"{signature.key.fingerprint}, which is not pinned in "
                             f"{shown(trust.database)}: not counted")
            continue
        # one key is pinned once, so counting principals also counts a key once
        counted.setdefault(pinned.principal, Signer(pinned.principal, signature.key,
                                                    f"pinned in {shown(trust.database)}", file))
    if len(counted) < trust.threshold:
        by = ", ".join(shown(p) for p in counted) or "no pinned signer"
        more = f" ({'; '.join(strangers)})" if strangers else ""
        raise TrustRefused(
            f"{presented.manifest_name} is signed by {len(counted)} distinct pinned signer(s) "
            f"({by}){more}; {where} and needs {trust.threshold} (trust: {trust.describe()}). "
            "Each further signer adds theirs with `inv cosign <version> KEY`; "
            "refusing the dump")
    return Verdict(trust.describe(), tuple(counted.values()), tuple(strangers))


def unsigned(manifest_name: str) -> Presented:
    """What a caller without signatures presents (the package's plain ``restore(plan)``)."""
    return Presented(manifest_name)
