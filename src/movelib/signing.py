"""Signed releases: SSH signatures (SSHSIG) over a dump's manifest, checked against git's
``allowed_signers`` file.

Signing runs ``ssh-keygen -Y sign``, the program git itself runs for ``git tag -s`` with
``gpg.format ssh``: it reads passphrase-protected keys, ssh-agent and hardware keys. Verifying
is pure Python (``cryptography``), so a restore needs no ssh-keygen on any platform and accepts
exactly what ``ssh-keygen -Y verify -n movelib-release`` accepts for ed25519, ecdsa-sha2-nistp*
and rsa keys (rsa-sha2-256/512), with sha256 or sha512 message hashes. The manifest carries the
dump's sha256, so a verified manifest covers the dump too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import (
    ConfigError,
    SignatureMismatch,
    SignatureRefused,
    SignerExpired,
    SigningError,
    UnknownSigner,
    UnsignedRelease,
    WrongNamespace,
)
from .manifest import write_atomically

NAMESPACE = "movelib-release"
_BEGIN, _END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
_HASHES = {"sha256", "sha512"}
_KEY_TYPES = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+|sk-\S+|ssh-dss|\S+-cert-v01@openssh\.com)$")
_OPTIONS = {"cert-authority", "namespaces", "valid-after", "valid-before"}
_VERIFIES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}


def signature_path(manifest: Path) -> Path:
    """``x.manifest.json`` -> ``x.manifest.json.sig``."""
    return manifest.with_name(manifest.name + ".sig")


class _Reader:
    """The SSH wire format: uint32 lengths, strings and mpints."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        return self.string().decode("utf-8")

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


@dataclass(frozen=True)
class PublicKey:
    blob: bytes  # the SSH wire encoding, as in an allowed_signers line (base64-decoded)

    @property
    def key_type(self) -> str:
        return _Reader(self.blob).text()

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def describe(self) -> str:
        return f"{self.key_type} key {self.fingerprint}"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` (an SSH signature blob) signs ``data`` with this key."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

        try:
            key, sig = _Reader(self.blob), _Reader(signature)
            key_type, algorithm, raw = key.text(), sig.text(), sig.string()
            sig.end()
            if key_type == "ssh-ed25519" and algorithm == key_type:
                ed25519.Ed25519PublicKey.from_public_bytes(key.string()).verify(raw, data)
            elif key_type.startswith("ecdsa-sha2-nistp") and algorithm == key_type:
                curve, hash_ = {"nistp256": (ec.SECP256R1, hashes.SHA256),
                                "nistp384": (ec.SECP384R1, hashes.SHA384),
                                "nistp521": (ec.SECP521R1, hashes.SHA512)}[key_type[11:]]
                if key.text() != key_type[11:]:
                    return False
                point = ec.EllipticCurvePublicKey.from_encoded_point(curve(), key.string())
                rs = _Reader(raw)
                der = utils.encode_dss_signature(rs.mpint(), rs.mpint())
                rs.end()
                point.verify(der, data, ec.ECDSA(hash_()))
            elif key_type == "ssh-rsa" and algorithm in ("rsa-sha2-256", "rsa-sha2-512"):
                e, n = key.mpint(), key.mpint()
                if n.bit_length() < 1024:
                    return False  # ssh-keygen refuses these too
                rsa_hash = hashes.SHA256() if algorithm == "rsa-sha2-256" else hashes.SHA512()
                rsa.RSAPublicNumbers(e, n).public_key().verify(raw, data, padding.PKCS1v15(), rsa_hash)
            else:
                return False
        except (InvalidSignature, KeyError, ValueError, UnicodeDecodeError):
            return False
        return True


@dataclass(frozen=True)
class Signature:
    """A parsed ``-----BEGIN SSH SIGNATURE-----`` file."""

    key: PublicKey
    namespace: str
    hash_algorithm: str
    reserved: bytes
    blob: bytes

    @classmethod
    def parse(cls, armored: str, where: str) -> Signature:
        text = armored.strip()
        try:
            if not (text.startswith(_BEGIN) and text.endswith(_END)):
                raise ValueError("not an armored SSH signature")
            body = "".join(text[len(_BEGIN):-len(_END)].split())
            r = _Reader(base64.b64decode(body, validate=True))
            if r.take(6) != b"SSHSIG" or r.uint32() != 1:
                raise ValueError("not SSHSIG version 1")
            key, namespace, reserved = PublicKey(r.string()), r.text(), r.string()
            hash_algorithm, blob = r.text(), r.string()
            r.end()
            key_type = key.key_type
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise SignatureRefused(
                f"{where} is not a valid SSH signature ({exc}); refusing the dump") from None
        if key_type not in _VERIFIES:
            raise SignatureRefused(
                f"{where} is made with a {key_type} key; movelib verifies ed25519, ecdsa and rsa "
                "keys (check this one with ssh-keygen -Y verify); refusing the dump")
        if hash_algorithm not in _HASHES:
            raise SignatureRefused(f"{where} hashes the message with {hash_algorithm!r}, not sha256 or "
                                   "sha512; refusing the dump")
        return cls(key, namespace, hash_algorithm, reserved, blob)

    def signs(self, message: bytes) -> bool:
        digest = hashlib.new(self.hash_algorithm, message).digest()
        signed = (b"SSHSIG" + _string(self.namespace.encode()) + _string(self.reserved)
                  + _string(self.hash_algorithm.encode()) + _string(digest))
        return self.key.verify(self.blob, signed)


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an ``allowed_signers`` file (see ssh-keygen(1), ALLOWED SIGNERS)."""

    principals: str
    key: PublicKey
    namespaces: str | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    cert_authority: bool = False
    where: str = ""

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or _match_list(namespace, self.namespaces)


def _match_list(value: str, patterns: str) -> bool:
    """OpenSSH's match_pattern_list: ``*`` and ``?`` wildcards, ``!`` negates and wins."""
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        regex = re.escape(pattern.removeprefix("!")).replace(r"\*", ".*").replace(r"\?", ".")
        if re.fullmatch(regex, value):
            if negated:
                return False
            matched = True
    return matched


def _timestamp(value: str, where: str) -> datetime:
    """YYYYMMDD[HHMM[SS]], UTC with a trailing Z, else local time (as ssh-keygen reads it)."""
    utc = value.endswith(("Z", "z"))
    digits = value[:-1] if utc else value
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    try:
        if not digits.isdigit():
            raise ValueError
        moment = datetime.strptime(digits, formats[len(digits)])
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a time like 20260101 or 20260101120000Z") from None
    return moment.replace(tzinfo=UTC) if utc else moment.astimezone()


def _field(line: str) -> tuple[str, str]:
    """The first whitespace-separated field (double quotes group), and the rest."""
    i, quoted = 0, False
    while i < len(line) and (quoted or not line[i].isspace()):
        quoted ^= line[i] == '"'
        i += 1
    if quoted:
        raise ValueError("unterminated quote")
    return line[:i], line[i:].lstrip()


def _parse_line(line: str, where: str) -> AllowedSigner:
    try:
        principals, rest = _field(line)
        options: dict[str, str | None] = {}
        field, after = _field(rest)
        if not _KEY_TYPES.match(field):
            for option in re.findall(r'(?:[^,"]|"[^"]*")+', field):
                name, _, value = option.partition("=")
                if name.lower() not in _OPTIONS:
                    raise ValueError(f"unknown option {name!r}")
                options[name.lower()] = value.strip('"') if value else None
            rest = after
        key_type, rest = _field(rest)
        encoded, _comment = _field(rest)
        key = PublicKey(base64.b64decode(encoded, validate=True))
        if key.key_type != key_type:
            raise ValueError(f"the key says {key.key_type}, the line says {key_type}")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not an allowed_signers line ({exc}); the format is "
                          "'principals [options] key-type base64-key [comment]'") from None
    after_, before = options.get("valid-after"), options.get("valid-before")
    return AllowedSigner(
        principals=principals.strip('"'), key=key, namespaces=options.get("namespaces"),
        valid_after=_timestamp(after_, where) if after_ else None,
        valid_before=_timestamp(before, where) if before else None,
        cert_authority="cert-authority" in options, where=where)


def parse_allowed_signers(text: str, source: str) -> list[AllowedSigner]:
    signers = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            signers.append(_parse_line(line.strip(), f"{source}:{number}"))
    return signers


def load_allowed_signers(path: Path) -> list[AllowedSigner]:
    """The file's signers; a missing file trusts nobody."""
    if not path.is_file():
        return []
    return parse_allowed_signers(path.read_text(encoding="utf-8"), str(path))


@dataclass(frozen=True)
class Verified:
    key: PublicKey
    principals: str

    def describe(self) -> str:
        return f"good, by {self.principals} ({self.key.describe()})"


def verify(message: bytes, signature: Signature, signers: list[AllowedSigner], *, where: str,
           allowed_signers: Path, now: datetime | None = None) -> Verified:
    """Accept ``signature`` over ``message`` as ssh-keygen -Y verify would, or say why not."""
    if signature.namespace != NAMESPACE:
        raise WrongNamespace(f"{where} was made for namespace {signature.namespace!r}, not "
                             f"{NAMESPACE!r} (ssh-keygen -Y sign -n {NAMESPACE}); refusing the dump")
    if not signature.signs(message):
        raise SignatureMismatch(
            f"{where} does not match the manifest: the manifest (or the dump it describes) was "
            "changed after it was signed, or the signature belongs to another release; refusing the dump")
    lines = [s for s in signers if s.key == signature.key and not s.cert_authority]
    if not lines:
        missing = "" if allowed_signers.is_file() else ", which does not exist"
        raise UnknownSigner(f"{where} is signed by {signature.key.describe()}, which is not in "
                            f"{allowed_signers}{missing}; refusing the dump")
    now = now or datetime.now(UTC)
    for line in lines:
        if not line.allows_namespace(NAMESPACE):
            continue
        if (line.valid_after and now < line.valid_after) or (line.valid_before and now > line.valid_before):
            continue
        return Verified(signature.key, line.principals)
    line = lines[0]
    if not any(s.allows_namespace(NAMESPACE) for s in lines):
        raise WrongNamespace(f"{where}: {line.principals}'s key may sign only namespaces "
                             f"{line.namespaces!r} ({line.where}), not {NAMESPACE!r}; refusing the dump")
    early = line.valid_after is not None and now < line.valid_after
    window = (f"valid after {line.valid_after:%Y-%m-%d %H:%M %Z}" if early
              else f"valid before {line.valid_before:%Y-%m-%d %H:%M %Z}")
    raise SignerExpired(f"{where}: {line.principals}'s key is {window} only ({line.where}), so it "
                        "cannot vouch for a release now; refusing the dump")


def check_release_signature(manifest: Path, allowed_signers: Path, *, required: bool,
                            now: datetime | None = None) -> Verified | None:
    """Verify ``<manifest>.sig`` when present; without one, None, or a refusal if ``required``."""
    sig_path = signature_path(manifest)
    if not sig_path.is_file():
        if required:
            raise UnsignedRelease(
                f"{manifest.name} is unsigned (no {sig_path.name}), and this restore needs a release "
                f"signed by an allowed signer (`inv release --sign KEY`, {allowed_signers}); "
                "refusing the dump")
        return None
    signature = Signature.parse(sig_path.read_text(encoding="utf-8", errors="replace"), str(sig_path))
    return verify(manifest.read_bytes(), signature, load_allowed_signers(allowed_signers),
                  where=str(sig_path), allowed_signers=allowed_signers, now=now)


def require_signed_for(label: str | None, verified: Verified | None, manifest: Path,
                       target: str) -> None:
    """A production-labelled target takes only a release verified against allowed_signers
    (called with the label read under the restore's lock, before anything is written)."""
    from .guard import PROTECTED

    if verified is None and label in PROTECTED:
        raise UnsignedRelease(
            f"{manifest.name} is unsigned, and {target} is labelled {label}: only a release signed "
            "by an allowed signer (`inv release --sign KEY`) may be restored there; refusing the dump")


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if not found:
        raise SigningError("ssh-keygen is not on PATH: signing needs OpenSSH 8.2+ (it ships with "
                           "macOS, Git for Windows and Windows 10+, and openssh-client on Linux)")
    return found


def check_signing_key(key: Path) -> None:
    """Refuse early (before any dump is written) what cannot sign."""
    if not key.is_file():
        raise SigningError(f"signing key {key} does not exist (give a private key file, or a .pub "
                           "whose private half is in ssh-agent)")
    ssh_keygen()


def sign_file(path: Path, key: Path, *, namespace: str = NAMESPACE) -> Path:
    """Write ``<path>.sig`` with ``ssh-keygen -Y sign`` (passphrases and ssh-agent work as for git)."""
    check_signing_key(key)
    with path.open("rb") as message:
        proc = subprocess.run([ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", namespace],
                              stdin=message, capture_output=True, check=False)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not proc.stdout.startswith(_BEGIN.encode()):
        raise SigningError(f"ssh-keygen could not sign {path.name} with {key}: "
                           f"{lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    sig = signature_path(path)
    write_atomically(sig, proc.stdout)
    return sig
