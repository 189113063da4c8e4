"""The SSH signature format (SSHSIG) and the keys it names, read as OpenSSH reads them
(sshsig.c, sshkey.c, sshbuf.c): the wire format, armored signatures, and the verification of
ed25519, ecdsa-sha2-nistp* and rsa signatures as OpenSSH decides them. The public keys
themselves are parsed by ``cryptography`` (:func:`key_from_blob` adds OpenSSH's own checks).
Who is trusted to sign is :mod:`movelib.ship.allowed_signers`; the decision is :mod:`movelib.ship.signing`."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..base.errors import SignatureRefused
from ..base.text import shown

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePublicKey,
        EllipticCurvePublicNumbers,
    )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BEGIN, END = b"-----BEGIN SSH SIGNATURE-----\n", b"\n-----END SSH SIGNATURE-----"
WHITESPACE = b" \t\r\n"  # misc.c WHITESPACE, what strdelim splits on
_MAX_BIGNUM = 16384 // 8  # sshbuf.h SSHBUF_MAX_BIGNUM

# sshkey.c's key implementations (OpenSSH 9.x, built with OpenSSL, without XMSS): the name a line
# or blob gives -> the plain type. Only the types movelib verifies have a plain type of their own.
_ED25519, _RSA = "ssh-ed25519", "ssh-rsa"
_ECDSA = {"ecdsa-sha2-nistp256": b"nistp256", "ecdsa-sha2-nistp384": b"nistp384",
          "ecdsa-sha2-nistp521": b"nistp521"}
VERIFIED_NAMES = {_ED25519: _ED25519, _RSA: _RSA, "rsa-sha2-256": _RSA, "rsa-sha2-512": _RSA,
                   **{name: name for name in _ECDSA}}
OTHER_NAMES = {
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


def printable(value: bytes | str) -> str:
    """Text read from a signature or allowed_signers, fit to print: control characters (an ESC
    that could rewrite the line) escaped, long values cut."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return shown(value)



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


def b64_pton(text: bytes) -> bytes:
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

# ecdsa's hash by curve (RFC 5656 6.2.1), by cryptography's curve name
_HASHES = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}
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
    if text in VERIFIED_NAMES:
        return VERIFIED_NAMES[text]
    if text.lower() in _SHORT_NAMES:
        return _SHORT_NAMES[text.lower()]
    if text in OTHER_NAMES or text.lower() in _OTHER_SHORT_NAMES:
        raise UnsupportedKey(text)
    raise ValueError(f"an unknown key type '{printable(name)}'")


def key_from_blob(blob: bytes) -> PublicKey:
    """sshkey_from_blob: the key a wire blob holds, checked as OpenSSH checks it, re-encoded
    canonically so equal keys compare equal. The type name is read as OpenSSH reads it (short
    names, any case); the key itself is parsed by ``cryptography`` (no trailing bytes, an ed25519
    key of 32 bytes, an uncompressed ecdsa point on its type's curve, no negative number), and
    what OpenSSH checks beyond that is checked here: an rsa modulus of 1024 to 16384 bits, an
    ecdsa point with no small coordinate."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_ssh_public_key,
    )

    r = _Reader(blob)
    key_type = _plain_type(r.cstring()).encode()
    named = _string(key_type) + blob[r.pos:]  # the name OpenSSH would use for this type
    try:
        key = load_ssh_public_key(key_type + b" " + base64.b64encode(named))
    except (ValueError, NotImplementedError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a valid {key_type.decode()} key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey) and not 1024 <= key.key_size <= 16384:
        raise ValueError(f"an rsa key of {key.key_size} bits (1024 to 16384 are allowed)")
    if isinstance(key, ec.EllipticCurvePublicKey):
        _check_coordinates(_ECDSA[key_type.decode()], key.public_numbers())
    return PublicKey(b64_pton(key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1]))


def _check_coordinates(curve: bytes, numbers: EllipticCurvePublicNumbers) -> None:
    """sshkey_ec_validate_public's size check, which OpenSSL's point check leaves out: neither
    coordinate may be small."""
    half = _ORDERS[curve].bit_length() // 2
    if numbers.x.bit_length() <= half or numbers.y.bit_length() <= half:
        raise ValueError("an ecdsa point with a small coordinate")


@dataclass(frozen=True)
class PublicKey:
    blob: bytes  # the canonical SSH wire encoding (make one with PublicKey.from_blob)

    @classmethod
    def from_blob(cls, blob: bytes) -> PublicKey:
        return key_from_blob(blob)

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
        return f"{printable(self.key_type)} key {self.fingerprint}"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` (an SSH signature blob) signs ``data`` with this key, as
        sshkey_verify decides (ssh-ed25519.c, ssh-ecdsa.c, ssh-rsa.c)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key

        try:
            key = load_ssh_public_key(self.key_type.encode() + b" " + base64.b64encode(self.blob))
            sig = _Reader(signature)
            algorithm = sig.cstring()
            if isinstance(key, ed25519.Ed25519PublicKey):
                return algorithm == b"ssh-ed25519" and _ed25519_verify(key, sig, data)
            if isinstance(key, rsa.RSAPublicKey):
                numbers = key.public_numbers()
                return _rsa_verify(numbers.e, numbers.n, algorithm, sig, data)
            assert isinstance(key, ec.EllipticCurvePublicKey)
            return algorithm == self.key_type.encode() and _ecdsa_verify(key, sig, data)
        except (InvalidSignature, ValueError):
            return False


def _ed25519_verify(public: Ed25519PublicKey, sig: _Reader, data: bytes) -> bool:
    """ssh_ed25519_verify over OpenSSH's ref10 crypto_sign_open: 64 bytes; S is taken modulo the
    group order once its top three bits are clear (so S + L verifies where OpenSSL refuses it)."""
    raw = sig.string()
    sig.end()
    if len(raw) != 64 or raw[63] & 0xE0:
        return False
    s = int.from_bytes(raw[32:], "little") % _ED25519_L
    public.verify(raw[:32] + s.to_bytes(32, "little"), data)
    return True


def _ecdsa_verify(public: EllipticCurvePublicKey, sig: _Reader, data: bytes) -> bool:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    inner = _Reader(sig.string())
    sig.end()
    r, s = inner.bignum(), inner.bignum()
    inner.end()
    hash_name = _HASHES[public.curve.name]
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
    if not armored.startswith(BEGIN):
        raise ValueError("not an armored SSH signature: it does not start with "
                         "-----BEGIN SSH SIGNATURE-----")
    end = armored.find(END, len(BEGIN))
    if end < 0:
        raise ValueError("not an armored SSH signature: no -----END SSH SIGNATURE----- line")
    body = armored[len(BEGIN):end]
    if b"\0" in body[:-1]:
        raise ValueError("a NUL byte inside the signature")
    return b64_pton(body.removesuffix(b"\0"))


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
            key = key_from_blob(key_blob)
        except UnsupportedKey as exc:
            raise SignatureRefused(
                f"{where} is made with a {printable(exc.name)} key; movelib verifies ed25519, ecdsa and "
                "rsa keys (check this one with ssh-keygen -Y verify); refusing the dump") from None
        except ValueError as exc:
            raise SignatureRefused(
                f"{where} is not a valid SSH signature ({printable(str(exc))}); refusing the dump") from None
        if hash_algorithm not in (b"sha256", b"sha512"):
            raise SignatureRefused(f"{where} hashes the message with '{printable(hash_algorithm)}', not "
                                   "sha256 or sha512; refusing the dump")
        return cls(key, namespace, hash_algorithm.decode(), reserved, blob)

    def signs(self, message: bytes) -> bool:
        """sshsig_wrap_verify: the signed data always has an empty reserved field."""
        digest = hashlib.new(self.hash_algorithm, message).digest()
        signed = (b"SSHSIG" + _string(self.namespace) + _string(b"")
                  + _string(self.hash_algorithm.encode()) + _string(digest))
        return self.key.verify(self.blob, signed)


