"""Signed releases: SSH signatures (SSHSIG) over a dump's manifest, checked against git's
``allowed_signers`` file.

Signing runs ``ssh-keygen -Y sign``, the program git itself runs for ``git tag -s`` with
``gpg.format ssh``: it reads passphrase-protected keys, ssh-agent and hardware keys. Verifying
is pure Python, so a restore needs no ssh-keygen on any platform, and it decides as git does with
OpenSSH 9.x: ``ssh-keygen -Y find-principals`` names the principals of the first line that holds
the key (and is in its time window), then ``ssh-keygen -Y verify -I <principal> -n
movelib-release`` must accept one of them. The parsing below follows OpenSSH's own (sshsig.c,
sshkey.c, misc.c, match.c) step by step, quirks included: a line ssh-keygen cannot read is
skipped, not fatal; option values must be quoted; a key blob with trailing bytes is no key.
tests/test_signing_differential.py runs both on the same inputs. Keys: ed25519, ecdsa-sha2-nistp*
and rsa (rsa-sha2-256/512); hardware (sk-), DSA and certificate keys are refused by name. The
manifest carries the dump's sha256, so a verified manifest covers the dump too.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..base.errors import (
    ArtifactError,
    SignatureMismatch,
    SignatureUnreadable,
    SignerExpired,
    SigningError,
    SigningUnavailable,
    UnknownSigner,
    UnsignedRelease,
    WrongNamespace,
)
from ..base.files import write_atomically
from ..base.readonce import read_bounded
from ..base.text import shown_path
from .allowed_signers import AllowedSigner, AllowedSigners, read_allowed_signers
from .sshkeys import BEGIN, PublicKey, Signature
from .sshkeys import printable as _text

NAMESPACE = "movelib-release"
MAX_SIGNATURE_BYTES = 64 * 1024  # ssh-keygen writes about 300 bytes (ed25519) to 1.7 KiB (rsa 8192)


def signature_path(manifest: Path) -> Path:
    """``x.manifest.json`` -> ``x.manifest.json.sig``."""
    return manifest.with_name(manifest.name + ".sig")


def read_signature_file(path: Path) -> bytes | None:
    """The bytes of a ``.sig`` file, or None when ``path`` does not exist. Anything else that is
    not a readable regular file of at most 64 KiB is a :class:`SignatureUnreadable`: a signature
    that cannot be read is never taken for no signature."""
    return read_bounded(path, MAX_SIGNATURE_BYTES, "signature", SignatureUnreadable)


# -- the decision -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    key: PublicKey
    principal: str  # the principal git's ssh-keygen -Y verify -I accepted
    allowed_signers: Path
    line: str = ""  # "<file>:<line>" of the allowed_signers line that vouched

    @property
    def principals(self) -> str:
        """The signer's name, as earlier versions called it."""
        return self.principal

    def describe(self) -> str:
        return (f"good, by {_text(self.principal)} ({self.key.short_type} {self.key.fingerprint}), "
                f"from {_text(str(self.allowed_signers))}")


def _candidates(principals: str) -> list[str]:
    """What git tries with ``-I``: find-principals prints the list up to its first empty entry,
    one a line; git drops a trailing CR and empty lines."""
    found = []
    for name in principals.split(","):
        if not name:
            break
        name = name.removesuffix("\r")
        if name:
            found.append(name)
    return found


def check_sound(message: bytes, signature: Signature, *, where: str) -> None:
    """What holds whoever the signer is: made for namespace movelib-release, over exactly
    ``message``. Checked before anything asks whom a target trusts."""
    if signature.namespace != NAMESPACE.encode():
        raise WrongNamespace(f"{where} was made for namespace '{_text(signature.namespace)}', not "
                             f"'{NAMESPACE}' (ssh-keygen -Y sign -n {NAMESPACE}); refusing the dump")
    if not signature.signs(message):
        raise SignatureMismatch(
            f"{where} does not match the manifest: the manifest (or the dump it describes) was "
            "changed after it was signed, or the signature belongs to another release; refusing the dump")


def verify(message: bytes, signature: Signature, trusted: AllowedSigners, *, where: str,
           now: datetime | None = None) -> Verified:
    """Accept ``signature`` over ``message`` as git with ssh-keygen would, or say why not:
    ``-Y find-principals`` takes the principals of the first line holding the key whose time
    window is open, then ``-Y verify -n movelib-release -I <principal>`` must accept one of them
    (a line that names it, holds the key, allows the namespace and is in its window)."""
    check_sound(message, signature, where=where)
    at = int((now or datetime.now(UTC)).timestamp())
    holding = [s for s in trusted.signers if not s.cert_authority and s.key == signature.key]
    if not holding:
        missing = "" if trusted.exists else ", which does not exist"
        raise UnknownSigner(f"{where} is signed by {signature.key.describe()}, which is not in "
                            f"{shown_path(trusted.path)}{missing}{_skipped(trusted)}; refusing the dump")
    first = next((s for s in holding if s.in_window(at)), None)
    if first is None:
        raise SignerExpired(_outside_window(where, holding[0], at))
    candidates = _candidates(first.principals)
    for principal in candidates:
        for line in holding:
            if line.matches_principal(principal) and line.allows_namespace(NAMESPACE) and line.in_window(at):
                return Verified(signature.key, principal, trusted.path, line.where)
    named = [s for s in holding if any(s.matches_principal(p) for p in candidates)]
    if not named:
        raise UnknownSigner(
            f"{where}: {first.where} trusts {signature.key.describe()} for '{_text(first.principals)}', "
            "a principal ssh-keygen -Y verify -I cannot match (empty or negated); refusing the dump")
    if not any(s.allows_namespace(NAMESPACE) for s in named):
        line = named[0]
        raise WrongNamespace(f"{where}: {_text(line.principals)}'s key may sign only namespaces "
                             f"'{_text(line.namespaces or '')}' ({line.where}), not '{NAMESPACE}'; "
                             "refusing the dump")
    raise SignerExpired(_outside_window(where, next(s for s in named if not s.in_window(at)), at))


def _outside_window(where: str, line: AllowedSigner, at: int) -> str:
    early = line.valid_after is not None and at < int(line.valid_after.timestamp())
    window = (f"valid after {line.valid_after:%Y-%m-%d %H:%M %Z}" if early and line.valid_after
              else f"valid before {line.valid_before:%Y-%m-%d %H:%M %Z}")
    return (f"{where}: {_text(line.principals)}'s key is {window} only ({line.where}), so it "
            "cannot vouch for a release now; refusing the dump")


def _skipped(trusted: AllowedSigners) -> str:
    if not trusted.skipped:
        return ""
    shown_ = "; ".join(trusted.skipped[:3]) + ("; ..." if len(trusted.skipped) > 3 else "")
    return f" (skipped as ssh-keygen skips them: {shown_})"


def check_signature(manifest_bytes: bytes, signature: bytes | None, *, where: str,
                    manifest_name: str, allowed_signers: Path, required: bool,
                    now: datetime | None = None) -> Verified | None:
    """Verify ``signature`` (a ``.sig`` file's bytes, None when there is none) over exactly
    ``manifest_bytes``; ``where`` names the signature in messages. Without a signature, None,
    or an :class:`UnsignedRelease` if ``required``. allowed_signers is read once, here."""
    if signature is None:
        if required:
            raise UnsignedRelease(
                f"{manifest_name} is unsigned (no {where}), and this restore needs a release "
                f"signed by an allowed signer (`inv release --sign KEY`, {shown_path(allowed_signers)}); "
                "refusing the dump")
        return None
    parsed = Signature.parse(signature, where)
    return verify(manifest_bytes, parsed, read_allowed_signers(allowed_signers), where=where, now=now)


def check_release_signature(manifest: Path, allowed_signers: Path, *, required: bool,
                            now: datetime | None = None) -> Verified | None:
    """Verify ``<manifest>.sig`` when present (each file read once; see :func:`check_signature`).
    A caller that also parses the manifest should read it once and call check_signature."""
    sig_path = signature_path(manifest)
    signature = read_signature_file(sig_path)
    manifest_bytes = read_bounded(manifest, 2**31, "manifest", ArtifactError)
    if manifest_bytes is None:
        raise ArtifactError(f"manifest {shown_path(manifest)} does not exist; refusing the dump")
    return check_signature(manifest_bytes, signature, where=str(sig_path), manifest_name=manifest.name,
                           allowed_signers=allowed_signers, required=required, now=now)


def require_signed_for(label: str | None, verified: Verified | None, manifest: Path,
                       target: str) -> None:
    """A production-labelled target takes only a release verified against allowed_signers
    (called with the label read under the restore's lock, before anything is written)."""
    from ..database.guard import PROTECTED

    if verified is None and label in PROTECTED:
        raise UnsignedRelease(
            f"{manifest.name} is unsigned, and {target} is labelled {label}: only a release signed "
            "by an allowed signer (`inv release --sign KEY`) may be restored there; refusing the dump")


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if not found:
        raise SigningUnavailable("ssh-keygen is not on PATH: signing needs OpenSSH 8.2+ (it ships with "
                           "macOS, Git for Windows and Windows 10+, and openssh-client on Linux)")
    return found


def check_signing_key(key: Path) -> None:
    """Refuse early (before any dump is written) what cannot sign."""
    if not key.is_file():
        raise SigningUnavailable(f"signing key {shown_path(key)} does not exist (give a private key "
                           "file, or a .pub whose private half is in ssh-agent)")
    ssh_keygen()


def sign_file(path: Path, key: Path, *, namespace: str = NAMESPACE, out: Path | None = None) -> Path:
    """Write ``<path>.sig`` (or ``out``) with ``ssh-keygen -Y sign`` (passphrases and ssh-agent
    work as for git)."""
    check_signing_key(key)
    with path.open("rb") as message:
        proc = subprocess.run([ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", namespace],
                              stdin=message, capture_output=True, check=False)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not proc.stdout.startswith(BEGIN):
        raise SigningError(f"ssh-keygen could not sign {path.name} with {shown_path(key)}: "
                           f"{lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    sig = out or signature_path(path)
    write_atomically(sig, proc.stdout)
    return sig
