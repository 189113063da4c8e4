"""Each signing file read once and bounded: a ``.sig`` or allowed_signers that is not a regular
file, is too large or cannot be read is said to be so (never "no signature" or "does not exist"),
a FIFO never blocks the read; and what a signature or allowed_signers says is printed escaped."""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path

import pytest
from support import SIGNER, allowed_signers, make_key, public

from movelib.base.errors import (
    AllowedSignersUnreadable,
    SignatureMismatch,
    SignatureRefused,
    SignatureUnreadable,
    UnknownSigner,
)
from movelib.ship.allowed_signers import MAX_ALLOWED_SIGNERS_BYTES, load_allowed_signers
from movelib.ship.signing import (
    MAX_SIGNATURE_BYTES,
    check_release_signature,
    check_signature,
    read_signature_file,
    sign_file,
    signature_path,
)

pytestmark = pytest.mark.usefixtures("ssh_keygen")


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _signed(tmp_path: Path, principal: str = SIGNER) -> tuple[Path, Path]:
    key = make_key(tmp_path / "keys")
    manifest = tmp_path / "m.manifest.json"
    manifest.write_text("{}\n")
    sign_file(manifest, key)
    return manifest, allowed_signers(tmp_path, f"{principal} {public(key)}")


def test_a_missing_signature_is_none_and_anything_else_is_read_or_refused(tmp_path: Path) -> None:
    assert read_signature_file(tmp_path / "none.sig") is None
    (tmp_path / "dir.sig").mkdir()
    with pytest.raises(SignatureUnreadable, match=r"dir\.sig is a directory, not a regular file"):
        read_signature_file(tmp_path / "dir.sig")
    big = tmp_path / "big.sig"
    big.write_bytes(b"x" * (MAX_SIGNATURE_BYTES + 1))
    with pytest.raises(SignatureUnreadable, match=r"big\.sig is 65537 bytes, larger than the 64 KiB"):
        read_signature_file(big)
    exact = tmp_path / "exact.sig"
    exact.write_bytes(b"x" * MAX_SIGNATURE_BYTES)
    assert read_signature_file(exact) == b"x" * MAX_SIGNATURE_BYTES


@pytest.mark.posix
def test_a_fifo_or_device_is_never_read_nor_taken_for_no_signature(tmp_path: Path) -> None:
    manifest, allowed = _signed(tmp_path)
    sig = signature_path(manifest)
    sig.unlink()
    if sys.platform == "win32":  # the posix marker already skips it there; this tells mypy
        pytest.skip("POSIX only")
    os.mkfifo(sig)  # nobody writes: opening it for reading would block
    for required in (False, True):
        with pytest.raises(SignatureUnreadable, match=r"is a FIFO \(named pipe\), not a regular file"):
            check_release_signature(manifest, allowed, required=required)
    sig.unlink()
    sig.symlink_to("/dev/zero")
    with pytest.raises(SignatureUnreadable, match="is a character device, not a regular file"):
        check_release_signature(manifest, allowed, required=False)


@pytest.mark.posix
def test_allowed_signers_that_is_a_fifo_a_device_or_too_large_says_so(tmp_path: Path) -> None:
    manifest, allowed = _signed(tmp_path)
    fifo = tmp_path / "fifo"
    if sys.platform == "win32":  # the posix marker already skips it there; this tells mypy
        pytest.skip("POSIX only")
    os.mkfifo(fifo)
    with pytest.raises(AllowedSignersUnreadable, match=r"fifo is a FIFO \(named pipe\), not a regular file"):
        check_release_signature(manifest, fifo, required=True)
    with pytest.raises(AllowedSignersUnreadable, match="/dev/zero is a character device, not a regular file"):
        load_allowed_signers(Path("/dev/zero"))
    big = tmp_path / "big"
    big.write_bytes(allowed.read_bytes() + b"#" * MAX_ALLOWED_SIGNERS_BYTES)
    with pytest.raises(AllowedSignersUnreadable, match="larger than the 1024 KiB"):
        check_release_signature(manifest, big, required=True)
    with pytest.raises(UnknownSigner, match="which does not exist"):
        check_release_signature(manifest, tmp_path / "nowhere", required=True)


def test_check_signature_uses_exactly_the_bytes_it_is_given(tmp_path: Path) -> None:
    manifest, allowed = _signed(tmp_path)
    signed, signature = manifest.read_bytes(), signature_path(manifest).read_bytes()
    manifest.write_text('{"swapped": true}\n')  # the files change after they were read once
    signature_path(manifest).unlink()
    verified = check_signature(signed, signature, where="m.sig", manifest_name="m.manifest.json",
                               allowed_signers=allowed, required=True)
    assert verified is not None and verified.principal == SIGNER
    with pytest.raises(SignatureMismatch, match="does not match the manifest"):
        check_signature(manifest.read_bytes(), signature, where="m.sig", manifest_name="m.manifest.json",
                        allowed_signers=allowed, required=True)


def test_a_good_signature_names_its_principal_key_and_allowed_signers_file(tmp_path: Path) -> None:
    manifest, allowed = _signed(tmp_path)
    verified = check_release_signature(manifest, allowed, required=True)
    assert verified is not None
    fingerprint = verified.key.fingerprint
    assert verified.describe() == f"good, by {SIGNER} (ED25519 {fingerprint}), from {allowed}"


def test_an_escape_sequence_in_a_principal_cannot_forge_the_line(tmp_path: Path) -> None:
    """A principal holding ESC [2K (erase line) and a CR would, printed raw, blank
    'signature: good, by mallory' and show a made-up signer instead."""
    forged = "mallory\x1b[2K\rsignature: good by boss@example.com"  # no comma: it splits principals
    manifest, allowed = _signed(tmp_path, f'"{forged}"')
    verified = check_release_signature(manifest, allowed, required=True)
    assert verified is not None and verified.principal == forged  # ssh-keygen accepts it too
    line = verified.describe()
    assert "\x1b" not in line and "\r" not in line
    assert "by mallory\\x1b[2K\\x0dsignature: good by boss@example.com (ED25519" in line


def test_an_escape_sequence_in_a_signature_is_printed_escaped(tmp_path: Path) -> None:
    manifest, allowed = _signed(tmp_path)
    armored = signature_path(manifest).read_bytes()
    blob = base64.b64decode(b"".join(armored.splitlines()[1:-1]))
    key_size = int.from_bytes(blob[10:14], "big")
    key_blob = blob[14:14 + key_size]
    evil_namespace = b"git\x1b[2K\rsignature: good"
    rest = blob[14 + key_size:]
    ns_size = int.from_bytes(rest[:4], "big")
    for edited in (blob[:14 + key_size] + _string(evil_namespace) + rest[4 + ns_size:],
                   blob[:10] + _string(_string(b"evil\x1b[2K") + key_blob[15:]) + rest):
        sig = b"-----BEGIN SSH SIGNATURE-----\n" + base64.b64encode(edited) + b"\n-----END SSH SIGNATURE-----\n"
        with pytest.raises(SignatureRefused) as refused:
            check_signature(manifest.read_bytes(), sig, where="m.sig", manifest_name="m",
                            allowed_signers=allowed, required=True)
        message = str(refused.value)
        assert "\x1b" not in message and "\r" not in message
        assert re.search(r"\\x1b\[2K", message), message
