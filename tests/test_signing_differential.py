"""movelib's signature verdict against git's, on the same bytes: ``ssh-keygen -Y
find-principals``, then ``ssh-keygen -Y verify -I <principal>`` for each principal it printed
(as git's gpg-interface.c does), at a fixed verify time. The reference decides: every case asserts
the same verdict, and when both accept, the same principal."""

from __future__ import annotations

import base64
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import SIGNER, make_key, public

from movelib.base.errors import ConfigError, SignatureRefused
from movelib.ship.signing import NAMESPACE, check_signature

pytestmark = [pytest.mark.usefixtures("ssh_keygen"), pytest.mark.slow]  # every case runs ssh-keygen: CI runs them, -m 'not slow' leaves them out

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VERIFY_TIME = "-Overify-time=20260601120000Z"
MESSAGE = b'{"release": "v1.0", "sha256": "00"}\n'
_KEYS: dict[str, Path] = {}
_SIGS: dict[str, bytes] = {}


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _armor(blob: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(blob).decode(), 70))
    return f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n".encode()


def _unarmor(armored: bytes) -> bytes:
    return base64.b64decode(b"".join(armored.splitlines()[1:-1]))


def _fields(blob: bytes) -> list[bytes]:
    """An SSHSIG blob's fields after magic and version: key, namespace, reserved, hash, sig."""
    out, pos = [], 10
    while pos < len(blob):
        size = int.from_bytes(blob[pos:pos + 4], "big")
        out.append(blob[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def _sshsig(fields: list[bytes], version: int = 1, tail: bytes = b"") -> bytes:
    return _armor(b"SSHSIG" + version.to_bytes(4, "big") + b"".join(map(_string, fields)) + tail)


def keygen_sign(key: Path, namespace: str = NAMESPACE, message: bytes = MESSAGE, hashalg: str = "sha512") -> bytes:
    return subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", namespace, "-O", f"hashalg={hashalg}"],
                          input=message, capture_output=True, check=True).stdout


def _ed25519_signed(key: Path, reserved: bytes) -> bytes:
    """An SSHSIG whose signature covers a non-empty reserved field (ssh-keygen never signs one)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = serialization.load_ssh_private_key(key.read_bytes(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    signed = (b"SSHSIG" + _string(NAMESPACE.encode()) + _string(reserved) + _string(b"sha512")
              + _string(hashlib.sha512(MESSAGE).digest()))
    key_blob = base64.b64decode(public(key).split()[1])
    return _sshsig([key_blob, NAMESPACE.encode(), reserved, b"sha512",
                    _string(b"ssh-ed25519") + _string(private.sign(signed))])


def _malleated(armored: bytes) -> bytes:
    """The same ed25519 signature with S + L: ref10 (OpenSSH) reduces S, OpenSSL refuses it."""
    fields = _fields(_unarmor(armored))
    inner = fields[4]
    raw = inner[4 + 11 + 4:]
    s = int.from_bytes(raw[32:], "little") + 2**252 + 27742317777372353535851937790883648493
    fields[4] = _string(b"ssh-ed25519") + _string(raw[:32] + s.to_bytes(32, "little"))
    return _sshsig(fields)


@pytest.fixture
def keys(ssh_keygen: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys made once per run (ssh-keygen is slow for rsa), after ssh_keygen's check."""
    if not _KEYS:
        folder = tmp_path_factory.mktemp("differential-keys")
        for name, kind in [("ed25519", "ed25519"), ("stranger", "ed25519"), ("rsa", "rsa"),
                           ("ecdsa", "ecdsa-nistp256")]:
            _KEYS[name] = make_key(folder, name, kind)
    return _KEYS


def signatures(keys: dict[str, Path]) -> dict[str, bytes]:
    if not _SIGS:
        good = keygen_sign(keys["ed25519"])
        fields = _fields(_unarmor(good))
        short_name = _string(b"ED25519") + fields[0][4 + 11:]
        _SIGS.update({
            "good": good,
            "good-sha256": keygen_sign(keys["ed25519"], hashalg="sha256"),
            "rsa": keygen_sign(keys["rsa"]),
            "ecdsa": keygen_sign(keys["ecdsa"]),
            "stranger": keygen_sign(keys["stranger"]),
            "namespace-git": keygen_sign(keys["ed25519"], namespace="git"),
            "other-message": keygen_sign(keys["ed25519"], message=b"another manifest\n"),
            "reserved-edited": _sshsig([*fields[:2], b"x", *fields[3:]]),
            "reserved-signed": _ed25519_signed(keys["ed25519"], b"x"),
            "key-trailing-bytes": _sshsig([fields[0] + b"\0", *fields[1:]]),
            "key-short-type-name": _sshsig([short_name, *fields[1:]]),
            "version-0": _sshsig(fields, version=0),
            "version-2": _sshsig(fields, version=2),
            "blob-trailing-bytes": _sshsig(fields, tail=b"\0"),
            "s-plus-l": _malleated(good),
            "crlf-armor": good.replace(b"\n", b"\r\n"),
            "text-after-footer": good + b"trailing words\n",
            "leading-blank-line": b"\n" + good,
            "one-line-base64": _armor(_unarmor(good)).replace(b"\n", b"", 1).replace(
                b"-----BEGIN SSH SIGNATURE-----", b"-----BEGIN SSH SIGNATURE-----\n"),
            "padding-missing": good.replace(b"=\n-----END", b"\n-----END"),
        })
    return _SIGS


def keygen_verdict(sig: Path, allowed: Path) -> str | None:
    found = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(allowed), VERIFY_TIME],
                           capture_output=True, check=False)
    if found.returncode != 0:
        return None
    for line in found.stdout.split(b"\n"):
        principal = line.removesuffix(b"\r")
        if not principal:
            continue
        checked = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
                                  "-s", str(sig), VERIFY_TIME], input=MESSAGE, capture_output=True, check=False)
        if checked.returncode == 0:
            return principal.decode("utf-8", "surrogateescape")
    return None


def movelib_verdict(signature: bytes, allowed: Path) -> str | None:
    try:
        verified = check_signature(MESSAGE, signature, where="m.manifest.json.sig", manifest_name="m.manifest.json",
                                   allowed_signers=allowed, required=True, now=NOW)
    except (SignatureRefused, ConfigError):
        return None
    assert verified is not None
    return verified.principal


def same_verdict(folder: Path, allowed_text: bytes, signature: bytes) -> str | None:
    folder.mkdir(parents=True, exist_ok=True)
    allowed, sig = folder / "allowed_signers", folder / "m.manifest.json.sig"
    allowed.write_bytes(allowed_text)
    sig.write_bytes(signature)
    reference = keygen_verdict(sig, allowed)
    ours = movelib_verdict(signature, allowed)
    assert ours == reference, f"movelib {ours!r}, ssh-keygen {reference!r}\n{allowed_text!r}"
    return reference


# -- signatures, against a line that trusts the key --------------------------------------------

SIGNATURE_CASES = ["good", "good-sha256", "rsa", "ecdsa", "stranger", "namespace-git", "other-message",
                   "reserved-edited", "reserved-signed", "key-trailing-bytes", "key-short-type-name",
                   "version-0", "version-2", "blob-trailing-bytes", "s-plus-l", "crlf-armor",
                   "text-after-footer", "leading-blank-line", "one-line-base64", "padding-missing"]


@pytest.mark.parametrize("case", SIGNATURE_CASES)
def test_signature_variants_get_ssh_keygens_verdict(keys: dict[str, Path], tmp_path: Path, case: str) -> None:
    lines = "".join(f"{SIGNER} {public(keys[name])}\n" for name in ("ed25519", "rsa", "ecdsa"))
    same_verdict(tmp_path, lines.encode(), signatures(keys)[case])


# -- allowed_signers lines, with a good signature ------------------------------------------------

K = "{key}"
LINE_CASES = {
    "plain": f"{SIGNER} {K}",
    "namespace-allowed": f'{SIGNER} namespaces="{NAMESPACE}" {K}',
    "namespace-git-only": f'{SIGNER} namespaces="git" {K}',
    "namespace-wildcard": f'{SIGNER} namespaces="*" {K}',
    "namespace-prefix": f'{SIGNER} namespaces="git,movelib-*" {K}',
    "namespace-negated": f'{SIGNER} namespaces="!{NAMESPACE},*" {K}',
    "namespace-question-marks": f'{SIGNER} namespaces="movelib?release" {K}',
    "namespace-empty-quoted": f'{SIGNER} namespaces="" {K}',
    "namespace-no-value": f"{SIGNER} namespaces {K}",
    "namespace-equals-only": f"{SIGNER} namespaces= {K}",
    "namespace-unquoted": f"{SIGNER} namespaces={NAMESPACE} {K}",
    "namespace-upper-case-option": f'{SIGNER} NAMESPACES="{NAMESPACE}" {K}',
    "namespace-escaped-quote": f'{SIGNER} namespaces="a\\"b,{NAMESPACE}" {K}',
    "namespace-duplicate": f'{SIGNER} namespaces="git",namespaces="{NAMESPACE}" {K}',
    "namespace-duplicate-same": f'{SIGNER} namespaces="{NAMESPACE}",namespaces="{NAMESPACE}" {K}',
    "valid-before-no-value": f"{SIGNER} valid-before {K}",
    "valid-before-empty": f'{SIGNER} valid-before="" {K}',
    "valid-before-past": f'{SIGNER} valid-before="20260101" {K}',
    "valid-before-future": f'{SIGNER} valid-before="20270101" {K}',
    "valid-after-future": f'{SIGNER} valid-after="20270101000000Z" {K}',
    "valid-after-past-utc": f'{SIGNER} valid-after="20250101UTC" {K}',
    "valid-after-lower-z": f'{SIGNER} valid-after="202501011200z" {K}',
    "valid-after-seconds": f'{SIGNER} valid-after="20260601115959Z" {K}',
    "valid-after-one-second-late": f'{SIGNER} valid-after="20260601120001Z" {K}',
    "valid-before-exactly-now": f'{SIGNER} valid-before="20260601120000Z" {K}',
    "valid-after-feb-31-rolls-over": f'{SIGNER} valid-after="20260231" {K}',
    "valid-after-month-13": f'{SIGNER} valid-after="20261301" {K}',
    "valid-after-nine-digits": f'{SIGNER} valid-after="202601011" {K}',
    "valid-after-epoch": f'{SIGNER} valid-after="19700101Z" {K}',
    "valid-after-with-space": f'{SIGNER} valid-after="2026 101" {K}',
    "valid-window-backwards": f'{SIGNER} valid-after="20260301",valid-before="20260201" {K}',
    "valid-window-equal": f'{SIGNER} valid-after="20260301",valid-before="20260301" {K}',
    "valid-window-duplicate-after": f'{SIGNER} valid-after="20250101",valid-after="20250102" {K}',
    "valid-window-open": f'{SIGNER} valid-after="20250101",valid-before="20270101",namespaces="{NAMESPACE}" {K}',
    "cert-authority": f"{SIGNER} cert-authority {K}",
    "cert-authority-upper": f'{SIGNER} CERT-AUTHORITY,namespaces="{NAMESPACE}" {K}',
    "leading-comma": f',namespaces="{NAMESPACE}"'.join([f"{SIGNER} ", f" {K}"]),
    "empty-option-between": f'{SIGNER} namespaces="{NAMESPACE}",,valid-after="20250101" {K}',
    "trailing-comma": f'{SIGNER} namespaces="{NAMESPACE}", {K}',
    "unknown-option": f'{SIGNER} trust-me="yes" {K}',
    "principal-wildcard": f"* {K}",
    "principal-domain-wildcard": f"re@* {K}",
    "principal-question-mark": f"re?example.com {K}",
    "principal-negated-only": f"!{SIGNER} {K}",
    "principal-negated-then-plain": f"!x@example.com,{SIGNER} {K}",
    "principal-list": f"ops@example.com,{SIGNER} {K}",
    "principal-empty-entry": f"ops@example.com,,{SIGNER} {K}",
    "principal-leading-comma": f",{SIGNER} {K}",
    "principal-quoted-spaces": f'"Release Engineer <{SIGNER}>" {K}',
    "principal-quote-mid-field": f'a"b c"d {K}',
    "principal-unterminated-quote": f'"{SIGNER} {K}',
    "principal-with-escape-sequence": f'"mallory\x1b[2K\rsignature: good by boss" {K}',
    "principal-with-trailing-cr": f'"{SIGNER}\r" {K}',
    "leading-whitespace": f" \t{SIGNER} {K}",
    "tab-separated": f"{SIGNER}\t{K}",
    "comment-after-key": f"{SIGNER} {K} release key # not a comment marker",
    "commented-out": f"# {SIGNER} {K}",
    "crlf-line": f"{SIGNER} {K}\r",
    "key-type-rsa-sha2-name": "{SIGNER} rsa-sha2-512 {rsa_blob}",
    "key-type-mismatch": "{SIGNER} ssh-rsa {blob}",
    "key-blob-trailing-bytes": "{SIGNER} ssh-ed25519 {blob_trailing}",
    "key-blob-short-type-name": "{SIGNER} ssh-ed25519 {blob_short}",
    "key-blob-bad-base64": "{SIGNER} ssh-ed25519 AAAA!",
    "nul-in-line": f"{SIGNER} {K}\0 trailing",
    "git-only-line-first": f'git@example.com namespaces="git" {K}\n{SIGNER} {K}',
    "expired-line-first": f'old@example.com valid-before="20200101" {K}\n{SIGNER} {K}',
    "bad-line-first": f"{SIGNER} namespaces {K}\n{SIGNER} {K}",
    "stranger-line-first": "{SIGNER} {stranger}\n{SIGNER} {key}",
    "wildcard-line-then-namespace-line": f'* namespaces="git" {K}\n{SIGNER} {K}',
}


def _line_text(template: str, keys: dict[str, Path]) -> bytes:
    blob = base64.b64decode(public(keys["ed25519"]).split()[1])
    short = _string(b"ED25519") + blob[4 + 11:]
    text = template.format(
        SIGNER=SIGNER, key=public(keys["ed25519"]), stranger=public(keys["stranger"]),
        blob=public(keys["ed25519"]).split()[1], rsa_blob=public(keys["rsa"]).split()[1],
        blob_trailing=base64.b64encode(blob + b"\0").decode(), blob_short=base64.b64encode(short).decode())
    return ("# allowed signers\n\n" + text + "\n").encode()


@pytest.mark.parametrize("case", list(LINE_CASES))
def test_allowed_signers_variants_get_ssh_keygens_verdict(keys: dict[str, Path], tmp_path: Path, case: str) -> None:
    same_verdict(tmp_path, _line_text(LINE_CASES[case], keys), signatures(keys)["good"])


def _blob_variant(keys: dict[str, Path], case: str) -> bytes:
    """An allowed_signers line whose key blob is the ecdsa or rsa key's, re-encoded one way: what
    the key parser (cryptography's, plus OpenSSH's own checks) must judge as ssh-keygen does."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

    kind = "rsa" if case.startswith("rsa") else "ecdsa"
    name, b64 = public(keys[kind]).split()[:2]
    blob = base64.b64decode(b64)
    if kind == "ecdsa":
        key = load_ssh_public_key(f"{name} {b64}".encode())
        assert isinstance(key, ec.EllipticCurvePublicKey)
        point = {"ecdsa-compressed-point": PublicFormat.CompressedPoint,
                 "ecdsa-uncompressed-point": PublicFormat.UncompressedPoint}.get(case)
        if point is not None:
            blob = _string(name.encode()) + _string(b"nistp256") + _string(key.public_bytes(Encoding.X962, point))
        elif case == "ecdsa-other-curve-name":
            blob = blob.replace(_string(b"nistp256"), _string(b"nistp384"), 1)
        elif case == "ecdsa-trailing-bytes":
            blob += b"\0"
    else:
        fields, pos = [], 0
        while pos < len(blob):
            size = int.from_bytes(blob[pos:pos + 4], "big")
            fields.append(blob[pos + 4:pos + 4 + size])
            pos += 4 + size
        kind_name, e, n = fields
        e, n = {"rsa-leading-zeros": (b"\0" + e, b"\0" + n), "rsa-negative-modulus": (e, n.lstrip(b"\0")),
                "rsa-trailing-bytes": (e, n)}[case]
        blob = b"".join(map(_string, (kind_name, e, n))) + (b"\0" if case == "rsa-trailing-bytes" else b"")
    return f"# allowed signers\n{SIGNER} {name} {base64.b64encode(blob).decode()}\n".encode()


@pytest.mark.parametrize("case", ["ecdsa-uncompressed-point", "ecdsa-compressed-point", "ecdsa-other-curve-name",
                                  "ecdsa-trailing-bytes", "rsa-leading-zeros", "rsa-negative-modulus",
                                  "rsa-trailing-bytes"])
def test_re_encoded_key_blobs_get_ssh_keygens_verdict(keys: dict[str, Path], tmp_path: Path, case: str) -> None:
    signature = signatures(keys)["rsa" if case.startswith("rsa") else "ecdsa"]
    same_verdict(tmp_path, _blob_variant(keys, case), signature)


def test_the_cases_cover_both_verdicts(keys: dict[str, Path], tmp_path: Path) -> None:
    """The differential cases are worth something only if ssh-keygen accepts some and refuses others."""
    verdicts = {case: same_verdict(tmp_path / case, _line_text(LINE_CASES[case], keys), signatures(keys)["good"])
                for case in ("plain", "namespace-no-value", "principal-negated-then-plain", "git-only-line-first")}
    assert verdicts == {"plain": SIGNER, "namespace-no-value": None, "principal-negated-then-plain": SIGNER,
                        "git-only-line-first": None}


# -- generated: option strings and principal patterns --------------------------------------------

_VALID_TIMES = st.sampled_from(["20250101", "20270101", "20260601120000Z", "20260601115959z", "202606011200UTC",
                                "20260230", "20260601120001Z", "202606011201"])
_TIMES = st.one_of(_VALID_TIMES, _VALID_TIMES, st.sampled_from(["2026010", "", "20261301", "20250101T", "19691231Z"]))
_PATTERNS = st.lists(st.sampled_from([NAMESPACE, "git", "*", "movelib-*", "!" + NAMESPACE, "!git", "?", "movelib?release",
                                      "", "m*e", "*-release"]), max_size=3).map(",".join)
_OPTION = st.one_of(
    st.just("cert-authority"),
    _PATTERNS.map(lambda p: f'namespaces="{p}"'),
    _PATTERNS.map(lambda p: f'namespaces="{p}"'),
    _PATTERNS.map(lambda p: f"namespaces={p}"),
    _TIMES.map(lambda t: f'valid-after="{t}"'),
    _TIMES.map(lambda t: f'valid-before="{t}"'),
    st.sampled_from(["namespaces", "valid-before", "valid-after=", "Valid-Before=\"20270101\"", "", "no-touch-required"]),
)
_OPTIONS = st.lists(_OPTION, min_size=1, max_size=2).map(",".join)
_PRINCIPALS = st.lists(st.sampled_from([SIGNER, "ops@example.com", "*", "re@*", "!" + SIGNER, "!ops@*", "?e@example.com",
                                        "", "*@example.org", '"quoted name"']), min_size=1, max_size=3).map(",".join)
_GENERATED = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@_GENERATED
@given(options=_OPTIONS)
def test_generated_option_strings_get_ssh_keygens_verdict(keys: dict[str, Path], tmp_path: Path, options: str) -> None:
    text = f"{SIGNER} {options} {public(keys['ed25519'])}\n".encode()
    same_verdict(tmp_path / "options", text, signatures(keys)["good"])


@pytest.mark.slow
@_GENERATED
@given(principals=_PRINCIPALS, second=st.booleans())
def test_generated_principal_patterns_get_ssh_keygens_verdict(keys: dict[str, Path], tmp_path: Path, principals: str, second: bool) -> None:
    key = public(keys["ed25519"])
    text = f"{principals} {key}\n" + (f'{SIGNER} namespaces="{NAMESPACE}" {key}\n' if second else "")
    same_verdict(tmp_path / "principals", text.encode(), signatures(keys)["good"])
