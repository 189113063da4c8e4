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

import base64
import calendar
import hashlib
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .errors import (
    AllowedSignersUnreadable,
    ArtifactError,
    SignatureMismatch,
    SignatureRefused,
    SignatureUnreadable,
    SignerExpired,
    SigningError,
    UnknownSigner,
    UnsignedRelease,
    WrongNamespace,
)
from .manifest import write_atomically
from .text import shown

NAMESPACE = "movelib-release"
MAX_SIGNATURE_BYTES = 64 * 1024  # ssh-keygen writes about 300 bytes (ed25519) to 1.7 KiB (rsa 8192)
MAX_ALLOWED_SIGNERS_BYTES = 1024 * 1024
_BEGIN, _END = b"-----BEGIN SSH SIGNATURE-----\n", b"\n-----END SSH SIGNATURE-----"
_WHITESPACE = b" \t\r\n"  # misc.c WHITESPACE, what strdelim splits on
_MAX_BIGNUM = 16384 // 8  # sshbuf.h SSHBUF_MAX_BIGNUM

# sshkey.c's key implementations (OpenSSH 9.x, built with OpenSSL, without XMSS): the name a line
# or blob gives -> the plain type. Only the types movelib verifies have a plain type of their own.
_ED25519, _RSA = "ssh-ed25519", "ssh-rsa"
_ECDSA = {"ecdsa-sha2-nistp256": b"nistp256", "ecdsa-sha2-nistp384": b"nistp384",
          "ecdsa-sha2-nistp521": b"nistp521"}
_VERIFIED_NAMES = {_ED25519: _ED25519, _RSA: _RSA, "rsa-sha2-256": _RSA, "rsa-sha2-512": _RSA,
                   **{name: name for name in _ECDSA}}
_OTHER_NAMES = {
    "ssh-dss", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    *(f"{base}-cert-v01@openssh.com" for base in (
        "ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss", "ssh-rsa",
        "rsa-sha2-256", "rsa-sha2-512")),
}
# plain types also answer to their short name, case-insensitively (sshkey_type_from_name);
# "ECDSA" is the first ecdsa implementation, nistp256
_SHORT_NAMES = {"ed25519": _ED25519, "rsa": _RSA, "ecdsa": "ecdsa-sha2-nistp256"}
_OTHER_SHORT_NAMES = {"dsa", "ed25519-sk", "ecdsa-sk"}
_SHORT_TYPE = {_ED25519: "ED25519", _RSA: "RSA", **{name: "ECDSA" for name in _ECDSA}}


def signature_path(manifest: Path) -> Path:
    """``x.manifest.json`` -> ``x.manifest.json.sig``."""
    return manifest.with_name(manifest.name + ".sig")


def _text(value: bytes | str) -> str:
    """Text read from a signature or allowed_signers, fit to print: control characters (an ESC
    that could rewrite the line) escaped, long values cut."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return shown(value)


# -- reading files: once, bounded, never blocking ---------------------------------------------


def _read_bounded(path: Path, limit: int, what: str, error: type[Exception],
                  then: str = "refusing the dump") -> bytes | None:
    """The bytes of the regular file at ``path``, or None when nothing is there. A FIFO, a
    directory or a device is refused by its kind before it is opened (O_NONBLOCK as well, should
    it be swapped in between), and nothing larger than ``limit`` is read."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc}); {then}") from None
    kind = _kind(before.st_mode)
    if kind:
        raise error(f"{what} {path} is {kind}, not a regular file; {then}")
    if before.st_size > limit:
        raise error(f"{what} {path} is {before.st_size} bytes, larger than the {limit // 1024} KiB "
                    f"such a file can be; {then}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc}); {then}") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind:
            raise error(f"{what} {path} is {kind}, not a regular file; {then}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc}); {then}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{what} {path} grew past the {limit // 1024} KiB such a file can be while it "
                    f"was read; {then}")
    return b"".join(chunks)


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_signature_file(path: Path) -> bytes | None:
    """The bytes of a ``.sig`` file, or None when ``path`` does not exist. Anything else that is
    not a readable regular file of at most 64 KiB is a :class:`SignatureUnreadable`: a signature
    that cannot be read is never taken for no signature."""
    return _read_bounded(path, MAX_SIGNATURE_BYTES, "signature", SignatureUnreadable)


# -- the SSH wire format ------------------------------------------------------------------------


class _Reader:
    """sshbuf's getters: uint32 lengths, strings, C strings (no NUL inside) and bignums."""

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

    def cstring(self) -> bytes:
        value = self.string()
        if b"\0" in value:
            raise ValueError("a NUL inside a string")
        return value

    def bignum(self) -> int:
        """sshbuf_get_bignum2: not negative, at most 16384 bits, leading zeros allowed."""
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise ValueError("a negative number")
        if len(raw) > _MAX_BIGNUM + 1 or (len(raw) == _MAX_BIGNUM + 1 and raw[0]):
            raise ValueError("a number too large")
        return int.from_bytes(raw, "big")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def end(self) -> None:
        if self.left:
            raise ValueError("trailing bytes")


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _mpint(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big") if value else b""
    return _string(raw)


def _b64_pton(text: bytes) -> bytes:
    """OpenBSD's b64_pton, which sshbuf_b64tod uses: whitespace anywhere is skipped, the padding
    must be complete and the bits it leaves unused zero, nothing but whitespace after it."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    spaces = b" \t\n\v\f\r"
    bits, nbits, out, i = 0, 0, bytearray(), 0
    state = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch in spaces:
            continue
        if ch == ord("="):
            if state < 2:
                raise ValueError("bad base64 padding")
            rest = text[i:]
            if state == 2:  # one more '=' must follow, after any whitespace
                rest = rest.lstrip(spaces)
                if not rest.startswith(b"="):
                    raise ValueError("bad base64 padding")
                rest = rest[1:]
            if rest.strip(spaces):
                raise ValueError("bytes after the base64 padding")
            if bits & ((1 << nbits) - 1):
                raise ValueError("bad base64 padding")
            return bytes(out)
        pos = alphabet.find(bytes([ch]))
        if pos < 0:
            raise ValueError("not base64")
        bits, nbits = (bits << 6) | pos, nbits + 6
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
            bits &= (1 << nbits) - 1
        state = (state + 1) % 4
    if state:
        raise ValueError("base64 that stops mid-byte")
    return bytes(out)


# -- keys -----------------------------------------------------------------------------------------

_CURVES = {b"nistp256": ("SECP256R1", "SHA256", 256), b"nistp384": ("SECP384R1", "SHA384", 384),
           b"nistp521": ("SECP521R1", "SHA512", 521)}
_ORDERS = {  # the curves' group orders, for sshkey_ec_validate_public's size check
    b"nistp256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    b"nistp384": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AEC"
                     "EC196ACCC52973", 16),
    b"nistp521": int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                     "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B88"
                     "99C47AEBB6FB71E91386409", 16),
}
_ED25519_L = 2**252 + 27742317777372353535851937790883648493  # the ed25519 group order


class UnsupportedKey(ValueError):
    """A key type OpenSSH knows and movelib does not verify (DSA, hardware, certificates)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _plain_type(name: bytes) -> str:
    """sshkey_type_from_name: a full name, or a plain type's short name in any case."""
    text = name.decode("latin-1")
    if text in _VERIFIED_NAMES:
        return _VERIFIED_NAMES[text]
    if text.lower() in _SHORT_NAMES:
        return _SHORT_NAMES[text.lower()]
    if text in _OTHER_NAMES or text.lower() in _OTHER_SHORT_NAMES:
        raise UnsupportedKey(text)
    raise ValueError(f"an unknown key type '{_text(name)}'")


def _key_from_blob(blob: bytes) -> PublicKey:
    """sshkey_from_blob: the key a wire blob holds, checked as OpenSSH checks it (no trailing
    bytes, an ed25519 key of 32 bytes, an rsa modulus of 1024 to 16384 bits, an uncompressed
    ecdsa point on its curve), re-encoded canonically so equal keys compare equal."""
    r = _Reader(blob)
    key_type = _plain_type(r.cstring())
    if key_type == _ED25519:
        point = r.string()
        if len(point) != 32:
            raise ValueError("an ed25519 key that is not 32 bytes")
        canonical = _string(key_type.encode()) + _string(point)
    elif key_type == _RSA:
        e, n = r.bignum(), r.bignum()
        if not 1024 <= n.bit_length() <= 16384:
            raise ValueError(f"an rsa key of {n.bit_length()} bits (1024 to 16384 are allowed)")
        canonical = _string(key_type.encode()) + _mpint(e) + _mpint(n)
    else:
        curve = r.cstring()
        if curve != _ECDSA[key_type]:
            raise ValueError("an ecdsa key whose curve is not its type's")
        point = r.string()
        _ec_point(curve, point)
        canonical = _string(key_type.encode()) + _string(curve) + _string(point)
    r.end()
    return PublicKey(canonical)


def _ec_point(curve: bytes, point: bytes) -> tuple[int, int]:
    """get_ec and sshkey_ec_validate_public: uncompressed, on the curve, neither coordinate
    small."""
    from cryptography.hazmat.primitives.asymmetric import ec

    size = (_CURVES[curve][2] + 7) // 8
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise ValueError("an ecdsa point that is not uncompressed")
    numbers = ec.EllipticCurvePublicKey.from_encoded_point(
        getattr(ec, _CURVES[curve][0])(), point).public_numbers()
    half = _ORDERS[curve].bit_length() // 2
    if numbers.x.bit_length() <= half or numbers.y.bit_length() <= half:
        raise ValueError("an ecdsa point with a small coordinate")
    return numbers.x, numbers.y


@dataclass(frozen=True)
class PublicKey:
    blob: bytes  # the canonical SSH wire encoding (make one with PublicKey.from_blob)

    @classmethod
    def from_blob(cls, blob: bytes) -> PublicKey:
        return _key_from_blob(blob)

    @property
    def key_type(self) -> str:
        return _Reader(self.blob).cstring().decode()

    @property
    def short_type(self) -> str:
        """ssh-keygen -l's name for the type: ED25519, ECDSA, RSA."""
        return _SHORT_TYPE.get(self.key_type, self.key_type)

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def describe(self) -> str:
        return f"{_text(self.key_type)} key {self.fingerprint}"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` (an SSH signature blob) signs ``data`` with this key, as
        sshkey_verify decides (ssh-ed25519.c, ssh-ecdsa.c, ssh-rsa.c)."""
        from cryptography.exceptions import InvalidSignature

        try:
            key, sig = _Reader(self.blob), _Reader(signature)
            key_type, algorithm = key.cstring().decode(), sig.cstring()
            if key_type == _ED25519:
                return algorithm == b"ssh-ed25519" and _ed25519_verify(key.string(), sig, data)
            if key_type == _RSA:
                e, n = key.bignum(), key.bignum()
                return _rsa_verify(e, n, algorithm, sig, data)
            return algorithm == key_type.encode() and _ecdsa_verify(key, sig, data)
        except (InvalidSignature, ValueError):
            return False


def _ed25519_verify(public: bytes, sig: _Reader, data: bytes) -> bool:
    """ssh_ed25519_verify over OpenSSH's ref10 crypto_sign_open: 64 bytes; S is taken modulo the
    group order once its top three bits are clear (so S + L verifies where OpenSSL refuses it)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    raw = sig.string()
    sig.end()
    if len(raw) != 64 or raw[63] & 0xE0:
        return False
    s = int.from_bytes(raw[32:], "little") % _ED25519_L
    ed25519.Ed25519PublicKey.from_public_bytes(public).verify(raw[:32] + s.to_bytes(32, "little"), data)
    return True


def _ecdsa_verify(key: _Reader, sig: _Reader, data: bytes) -> bool:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    curve = key.cstring()
    x, y = _ec_point(curve, key.string())
    inner = _Reader(sig.string())
    sig.end()
    r, s = inner.bignum(), inner.bignum()
    inner.end()
    name, hash_name, _bits = _CURVES[curve]
    public = ec.EllipticCurvePublicNumbers(x, y, getattr(ec, name)()).public_key()
    public.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(getattr(hashes, hash_name)()))
    return True


_DIGEST_INFO = {  # PKCS#1 v1.5 DigestInfo prefixes (openssh_RSA_verify's id_sha256/id_sha512)
    b"rsa-sha2-256": ("sha256", bytes.fromhex("3031300d060960864801650304020105000420")),
    b"rsa-sha2-512": ("sha512", bytes.fromhex("3051300d060960864801650304020305000440")),
}


def _rsa_verify(e: int, n: int, algorithm: bytes, sig: _Reader, data: bytes) -> bool:
    """ssh_rsa_verify: rsa-sha2-256/512 only (sshsig allows no ssh-rsa/SHA-1), a signature no
    longer than the modulus (shorter ones are left-padded), then RSA_public_decrypt's checks and
    an exact DigestInfo. Done in integers so that what OpenSSL would compute is what counts."""
    if algorithm not in _DIGEST_INFO:
        return False
    raw = sig.string()
    sig.end()
    size = (n.bit_length() + 7) // 8
    if len(raw) > size or n <= e or (n.bit_length() > 3072 and e.bit_length() > 64):
        return False
    value = int.from_bytes(raw, "big")
    if value >= n:
        return False
    hash_name, prefix = _DIGEST_INFO[algorithm]
    digest = prefix + hashlib.new(hash_name, data).digest()
    if size < len(digest) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
    return pow(value, e, n).to_bytes(size, "big") == expected


# -- signatures -----------------------------------------------------------------------------------


def _dearmor(armored: bytes) -> bytes:
    """sshsig_dearmor: the header at the very start, then everything up to the first footer
    (whatever follows it is ignored) as base64."""
    if not armored.startswith(_BEGIN):
        raise ValueError("not an armored SSH signature: it does not start with "
                         "-----BEGIN SSH SIGNATURE-----")
    end = armored.find(_END, len(_BEGIN))
    if end < 0:
        raise ValueError("not an armored SSH signature: no -----END SSH SIGNATURE----- line")
    body = armored[len(_BEGIN):end]
    if b"\0" in body[:-1]:
        raise ValueError("a NUL byte inside the signature")
    return _b64_pton(body.removesuffix(b"\0"))


@dataclass(frozen=True)
class Signature:
    """A parsed ``-----BEGIN SSH SIGNATURE-----`` file."""

    key: PublicKey
    namespace: bytes
    hash_algorithm: str
    reserved: bytes  # read and, as ssh-keygen does, neither signed over nor checked
    blob: bytes

    @classmethod
    def parse(cls, armored: bytes | str, where: str) -> Signature:
        if isinstance(armored, str):
            armored = armored.encode("utf-8", "surrogateescape")
        try:
            r = _Reader(_dearmor(armored))
            if r.take(6) != b"SSHSIG":
                raise ValueError("not SSHSIG version 1")
            version = r.uint32()
            if version > 1:
                raise ValueError(f"SSHSIG version {version}, newer than the 1 that OpenSSH reads")
            key_blob, namespace, reserved = r.string(), r.cstring(), r.string()
            hash_algorithm, blob = r.cstring(), r.string()
            r.end()
            key = _key_from_blob(key_blob)
        except UnsupportedKey as exc:
            raise SignatureRefused(
                f"{where} is made with a {_text(exc.name)} key; movelib verifies ed25519, ecdsa and "
                "rsa keys (check this one with ssh-keygen -Y verify); refusing the dump") from None
        except ValueError as exc:
            raise SignatureRefused(
                f"{where} is not a valid SSH signature ({_text(str(exc))}); refusing the dump") from None
        if hash_algorithm not in (b"sha256", b"sha512"):
            raise SignatureRefused(f"{where} hashes the message with '{_text(hash_algorithm)}', not "
                                   "sha256 or sha512; refusing the dump")
        return cls(key, namespace, hash_algorithm.decode(), reserved, blob)

    def signs(self, message: bytes) -> bool:
        """sshsig_wrap_verify: the signed data always has an empty reserved field."""
        digest = hashlib.new(self.hash_algorithm, message).digest()
        signed = (b"SSHSIG" + _string(self.namespace) + _string(b"")
                  + _string(self.hash_algorithm.encode()) + _string(digest))
        return self.key.verify(self.blob, signed)


# -- allowed_signers, read as sshsig.c reads it --------------------------------------------------


def _match(value: bytes, pattern: bytes) -> bool:
    """match.c match_pattern: ``*`` and ``?`` wildcards, byte by byte, case-sensitive."""
    i = j = 0
    while True:
        if j == len(pattern):
            return i == len(value)
        if pattern[j] == ord("*"):
            while j < len(pattern) and pattern[j] == ord("*"):
                j += 1
            if j == len(pattern):
                return True
            return any(_match(value[k:], pattern[j:]) for k in range(i, len(value))
                       if pattern[j] == ord("?") or value[k] == pattern[j])
        if i == len(value) or (pattern[j] != ord("?") and pattern[j] != value[i]):
            return False
        i, j = i + 1, j + 1


def _match_list(value: bytes, patterns: bytes) -> int:
    """match.c match_pattern_list: 1 when a pattern matches, -1 when a negated one (``!``)
    does, else 0; a pattern of 1023 bytes or more ends the list with 0."""
    got, i = 0, 0
    while i < len(patterns):
        negated = patterns[i] == ord("!")
        i += negated
        end = patterns.find(b",", i)
        end = len(patterns) if end < 0 else end
        sub = patterns[i:end]
        if len(sub) >= 1023:
            return 0
        i = end + 1
        if _match(value, sub):
            if negated:
                return -1
            got = 1
    return got


def _strdelimw(line: bytes) -> tuple[bytes, bytes] | None:
    """misc.c strdelimw: the first field (a double quote starts a quoted part that may hold
    spaces) and the rest; None when ssh-keygen finds no field and rest (an unmatched quote, or
    nothing after the field)."""
    stop = next((i for i, c in enumerate(line) if c in _WHITESPACE + b'"'), None)
    if stop is None:
        return None
    if line[stop] == ord('"'):
        line = line[:stop] + line[stop + 1:]
        close = line.find(b'"', stop)
        if close < 0:
            return None
        return line[:close], line[close + 1:].lstrip(_WHITESPACE)
    return line[:stop], line[stop + 1:].lstrip(_WHITESPACE)


class _NotAKeyType(ValueError):
    """The field is no key type: ssh-keygen then reads it as options."""


def _read_key(text: bytes) -> tuple[PublicKey, bytes]:
    """sshkey_read: ``key-type base64``, the type one of OpenSSH's full names and the blob's."""
    space = next((i for i, c in enumerate(text) if c in b" \t"), None)
    if space is None:
        raise ValueError("no key")
    name = text[:space].decode("latin-1")
    if name not in _VERIFIED_NAMES and name not in _OTHER_NAMES:
        raise _NotAKeyType(f"'{_text(text[:space])}' is not a key type")
    rest = text[space:].lstrip(b" \t")
    if not rest:
        raise ValueError("no key after the key type")
    end = next((i for i, c in enumerate(rest) if c in b" \t"), len(rest))
    if name in _OTHER_NAMES:
        raise UnsupportedKey(name)
    key = _key_from_blob(_b64_pton(rest[:end]))
    if key.key_type != _VERIFIED_NAMES[name]:
        raise ValueError(f"the line says {name}, the key is {key.key_type}")
    return key, rest[end:]


def _advance_past_options(text: bytes) -> int:
    """authfile.c sshkey_advance_past_options: the first unquoted space or tab."""
    i, quoted = 0, False
    while i < len(text) and (quoted or text[i] not in b" \t"):
        if text[i] == ord("\\") and text[i + 1:i + 2] == b'"':
            i += 1
        elif text[i] == ord('"'):
            quoted = not quoted
        i += 1
    if i == len(text) and quoted:
        raise ValueError("an unterminated quote in the options")
    return i


def _dequote(opts: bytes, i: int, name: str) -> tuple[bytes, int]:
    """misc.c opt_dequote: a value in double quotes (``\\"`` inside is a quote)."""
    if opts[i:i + 1] != b'"':
        raise ValueError(f'{name}= has no value in double quotes (write {name}="...")')
    value, i = bytearray(), i + 1
    while i < len(opts) and opts[i] != ord('"'):
        if opts[i] == ord("\\") and opts[i + 1:i + 2] == b'"':
            i += 1
        value.append(opts[i])
        i += 1
    if i == len(opts):
        raise ValueError(f"{name}= has no closing quote")
    return bytes(value), i + 1


def _strptime_number(buf: bytes, i: int, low: int, high: int, digits: int) -> tuple[int, int]:
    """glibc strptime's get_number: spaces, then up to ``digits`` digits while the value can
    still grow within ``high``."""
    while i < len(buf) and buf[i] in b" \t\n\v\f\r":
        i += 1
    if i == len(buf) or not 48 <= buf[i] <= 57:
        raise ValueError
    value = 0
    while True:
        value, i, digits = value * 10 + buf[i] - 48, i + 1, digits - 1
        if not (digits > 0 and value * 10 <= high and i < len(buf) and 48 <= buf[i] <= 57):
            break
    if not low <= value <= high:
        raise ValueError
    return value, i


def _absolute_time(value: bytes) -> tuple[int, bool]:
    """misc.c parse_absolute_time: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, UTC with a
    trailing Z or UTC (any case), else local time (mktime, standard time); seconds since the
    epoch, which must be positive. Days past a month's end roll over, as mktime does."""
    size, utc = len(value), False
    if size > 1 and value[-1:].lower() == b"z":
        size, utc = size - 1, True
    elif size > 3 and value[-3:].lower() == b"utc":
        size, utc = size - 3, True
    if size not in (8, 12, 14):
        raise ValueError
    v = value
    buf = v[0:4] + b"-" + v[4:6] + b"-" + v[6:8]
    if size >= 12:
        buf += b"T" + v[8:10] + b":" + v[10:12]
    if size == 14:
        buf += b":" + v[12:14]
    fields, i = [], 0
    for n, (low, high, digits) in enumerate([(0, 9999, 4), (1, 12, 2), (1, 31, 2), (0, 23, 2),
                                             (0, 59, 2), (0, 61, 2)][:size // 2 - 1 if size > 8 else 3]):
        if n:
            if i == len(buf) or buf[i] != b"--T::"[n - 1]:
                raise ValueError
            i += 1
        number, i = _strptime_number(buf, i, low, high, digits)
        fields.append(number)
    if i != len(buf):
        raise ValueError
    fields += [0] * (6 - len(fields))
    moment = (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], 0, 0, 0)
    try:
        seconds = calendar.timegm(moment) if utc else int(time.mktime(moment))
    except (ValueError, OverflowError):
        raise ValueError from None
    if seconds <= 0:
        raise ValueError
    return seconds, utc


def _when(seconds: int, utc: bool) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) if utc else datetime.fromtimestamp(seconds).astimezone()


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an ``allowed_signers`` file (see ssh-keygen(1), ALLOWED SIGNERS)."""

    principals: str  # the patterns, as written (undecodable bytes kept as surrogates)
    key: PublicKey
    namespaces: str | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    cert_authority: bool = False
    where: str = ""

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or _match_list(_raw(namespace), _raw(self.namespaces)) == 1

    def in_window(self, at: int) -> bool:
        """sshsig.c: not valid while ``at`` < valid-after, expired once ``at`` > valid-before."""
        return not ((self.valid_after and at < int(self.valid_after.timestamp()))
                    or (self.valid_before and at > int(self.valid_before.timestamp())))

    def matches_principal(self, principal: str) -> bool:
        return _match_list(_raw(principal), _raw(self.principals)) == 1


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _cooked(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _parse_options(opts: bytes) -> dict[str, object]:
    """sshsig.c sshsigopt_parse: cert-authority, namespaces="...", valid-after="...",
    valid-before="...", each at most once, comma-separated; anything else refuses the line."""
    found: dict[str, object] = {}
    i = 0
    while i < len(opts) and opts[i] not in b" \t":
        rest = opts[i:].lower()
        if rest.startswith(b"cert-authority"):
            found["cert-authority"], i = True, i + len("cert-authority")
        else:
            name = next((n for n in ("namespaces", "valid-after", "valid-before")
                         if rest.startswith(n.encode() + b"=")), None)
            if name is not None:
                if name in found:
                    raise ValueError(f'more than one {name}= (ssh-keygen refuses the line)')
                value, i = _dequote(opts, i + len(name) + 1, name)
                if name == "namespaces":
                    found[name] = _cooked(value)
                else:
                    try:
                        found[name] = _when(*_absolute_time(value))
                    except ValueError:
                        raise ValueError(f"{name}=\"{_text(value)}\" is not a time like 20260101, "
                                         "202601011200 or 20260101120000Z") from None
        if i == len(opts) or opts[i] in b" \t":
            break
        if opts[i] != ord(","):
            word = opts[i:].split(b",")[0].split(b"=")[0]
            known = word.lower() in (b"namespaces", b"valid-after", b"valid-before")
            raise ValueError(f"option '{_text(word)}' needs a value (write {_text(word)}=\"...\")"
                             if known else f"unknown option '{_text(word)}'")
        i += 1
        if i == len(opts):
            raise ValueError("the options end with a comma")
    after, before = found.get("valid-after"), found.get("valid-before")
    if isinstance(after, datetime) and isinstance(before, datetime) and before <= after:
        raise ValueError("valid-before is not later than valid-after")
    return found


def _parse_line(line: bytes, where: str) -> AllowedSigner | None:
    """sshsig.c parse_principals_key_and_options: ``principals [options] key-type base64
    [comment]``; None for a blank or comment line, ValueError for one ssh-keygen skips."""
    line = line.split(b"\0", 1)[0]  # C strings end at a NUL
    text = line.lstrip(b" \t")
    if not text or text.startswith(b"#"):
        return None
    fields = _strdelimw(text)
    if fields is None:
        raise ValueError("an unterminated quote, or nothing after the principals")
    principals, text = fields
    opts = b""
    try:
        key, _comment = _read_key(text)
    except UnsupportedKey:
        raise
    except ValueError as first:
        try:  # not a key: options, then the key
            end = _advance_past_options(text)
            if end == len(text):
                raise ValueError("no key after the options") from None
            opts, text = text[:end], text[end + 1:].lstrip(b" \t")
            key, _comment = _read_key(text)
        except ValueError:
            if isinstance(first, _NotAKeyType):
                raise
            raise first from None  # it was a key type: what was wrong with that key says most
    found = _parse_options(opts)
    valid_after, valid_before = found.get("valid-after"), found.get("valid-before")
    namespaces = found.get("namespaces")
    return AllowedSigner(
        principals=_cooked(principals), key=key,
        namespaces=namespaces if isinstance(namespaces, str) else None,
        valid_after=valid_after if isinstance(valid_after, datetime) else None,
        valid_before=valid_before if isinstance(valid_before, datetime) else None,
        cert_authority="cert-authority" in found, where=where)


@dataclass(frozen=True)
class AllowedSigners:
    """An allowed_signers file as read once: its usable lines, and the ones ssh-keygen skips."""

    path: Path
    signers: list[AllowedSigner] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<file>:<line>: why"
    exists: bool = True


def _parse(data: bytes, source: str) -> tuple[list[AllowedSigner], list[str]]:
    signers, skipped = [], []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if number == len(lines) and not line:
            break
        where = f"{source}:{number}"
        try:
            signer = _parse_line(line + b"\n" * (number < len(lines)), where)
        except UnsupportedKey as exc:
            skipped.append(f"{where}: a {_text(exc.name)} key, which movelib does not verify")
        except ValueError as exc:
            skipped.append(f"{where}: {exc}")
        else:
            if signer is not None:
                signers.append(signer)
    return signers, skipped


def parse_allowed_signers(text: str | bytes, source: str) -> list[AllowedSigner]:
    """The lines ssh-keygen would use; a line it cannot read is skipped (see
    :func:`read_allowed_signers` for why)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return _parse(data, source)[0]


def read_allowed_signers(path: Path) -> AllowedSigners:
    """The file read once: a missing file trusts nobody; one that is not a regular file, is
    larger than 1 MiB or cannot be read is an :class:`AllowedSignersUnreadable`."""
    data = _read_bounded(path, MAX_ALLOWED_SIGNERS_BYTES, "allowed_signers file",
                         AllowedSignersUnreadable, "point paths.allowed_signers at the file itself")
    if data is None:
        return AllowedSigners(path, exists=False)
    signers, skipped = _parse(data, str(path))
    return AllowedSigners(path, signers, skipped)


def load_allowed_signers(path: Path) -> list[AllowedSigner]:
    """The file's usable signers; a missing file trusts nobody."""
    return read_allowed_signers(path).signers


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
                            f"{_text(str(trusted.path))}{missing}{_skipped(trusted)}; refusing the dump")
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
                f"signed by an allowed signer (`inv release --sign KEY`, {allowed_signers}); "
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
    manifest_bytes = _read_bounded(manifest, 2**31, "manifest", ArtifactError)
    if manifest_bytes is None:
        raise ArtifactError(f"manifest {manifest} does not exist; refusing the dump")
    return check_signature(manifest_bytes, signature, where=str(sig_path), manifest_name=manifest.name,
                           allowed_signers=allowed_signers, required=required, now=now)


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


def sign_file(path: Path, key: Path, *, namespace: str = NAMESPACE, out: Path | None = None) -> Path:
    """Write ``<path>.sig`` (or ``out``) with ``ssh-keygen -Y sign`` (passphrases and ssh-agent
    work as for git)."""
    check_signing_key(key)
    with path.open("rb") as message:
        proc = subprocess.run([ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", namespace],
                              stdin=message, capture_output=True, check=False)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not proc.stdout.startswith(_BEGIN):
        raise SigningError(f"ssh-keygen could not sign {path.name} with {key}: "
                           f"{lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    sig = out or signature_path(path)
    write_atomically(sig, proc.stdout)
    return sig
