"""Signed releases: SSH signatures over the manifest, git's allowed_signers, and restores that
insist on them. Keys are made by ssh-keygen in each test; ssh-keygen and git check what movelib
signs, and movelib checks what ssh-keygen signs."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import (
    CANONICAL,
    KEY_TYPES,
    NO_SIGNERS,
    ROOT,
    SIGNER,
    Cli,
    Server,
    allowed_signers,
    assert_no_secret,
    database,
    git,
    library_state,
    make_key,
    pin_key,
    public,
    restore_connected,
    seed,
    settings,
    table_hashes,
)

from movelib.base.errors import (
    SignatureMismatch,
    SignatureRefused,
    SignerExpired,
    SigningError,
    UnknownSigner,
    UnsignedRelease,
    WrongNamespace,
)
from movelib.database.target import Target, target_from_dsn
from movelib.ship.allowed_signers import parse_allowed_signers, read_allowed_signers
from movelib.ship.dump import dump
from movelib.ship.manifest import file_sha256, manifest_path
from movelib.ship.release import release
from movelib.ship.signing import NAMESPACE, check_release_signature, sign_file, signature_path

MIGRATIONS = ROOT / "migrations"
pytestmark = pytest.mark.usefixtures("ssh_keygen")  # keys and reference signatures


def keygen_sign(message: Path, key: Path, namespace: str = NAMESPACE, hashalg: str = "sha512") -> None:
    """``<message>.sig`` made by ssh-keygen itself (the message on stdin, as git does)."""
    with message.open("rb") as stdin:
        proc = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", namespace,
                               "-O", f"hashalg={hashalg}"], stdin=stdin, capture_output=True, check=True)
    signature_path(message).write_bytes(proc.stdout)


def keygen_verify(message: Path, allowed: Path, identity: str = SIGNER) -> subprocess.CompletedProcess[str]:
    with message.open("rb") as stdin:
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", identity,
                               "-n", NAMESPACE, "-s", str(signature_path(message))],
                              stdin=stdin, capture_output=True, text=True, check=False)


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def handmade_rsa_sha256_signature(message: bytes, key: Path) -> str:
    """An SSHSIG whose RSA signature is rsa-sha2-256 over a sha256 hash: ssh-keygen itself always
    picks rsa-sha2-512, yet must (and movelib must) accept both."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = serialization.load_ssh_private_key(key.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    head = _string(NAMESPACE.encode()) + _string(b"") + _string(b"sha256")
    signed = b"SSHSIG" + head + _string(hashlib.sha256(message).digest())
    raw = private.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    blob = (b"SSHSIG" + (1).to_bytes(4, "big") + _string(base64.b64decode(public(key).split()[1]))
            + head + _string(_string(b"rsa-sha2-256") + _string(raw)))
    body = "\n".join(textwrap.wrap(base64.b64encode(blob).decode(), 70))
    return f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n"


# -- the format, without a database -----------------------------------------------------------


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_signatures_interoperate_with_ssh_keygen(tmp_path: Path, kind: str) -> None:
    key = make_key(tmp_path / "keys", kind=kind)
    allowed = allowed_signers(tmp_path, f'{SIGNER} namespaces="{NAMESPACE}" {public(key)}')
    message = tmp_path / "x.manifest.json"
    message.write_text('{"sha256": "..."}\n')
    # movelib signs, ssh-keygen verifies
    sig = sign_file(message, key)
    assert sig == tmp_path / "x.manifest.json.sig"
    assert sig.read_text().startswith("-----BEGIN SSH SIGNATURE-----\n")
    checked = keygen_verify(message, allowed)
    assert checked.returncode == 0, checked.stderr
    assert f'Good "{NAMESPACE}" signature for {SIGNER}' in checked.stdout
    verified = check_release_signature(message, allowed, required=True)
    assert verified is not None and verified.principal == SIGNER
    # ssh-keygen signs (both message hashes), movelib verifies
    for hashalg in ("sha256", "sha512"):
        keygen_sign(message, key, hashalg=hashalg)
        verified = check_release_signature(message, allowed, required=True)
        assert verified is not None and verified.key.fingerprint in checked.stdout
    if kind == "rsa":
        sig.write_text(handmade_rsa_sha256_signature(message.read_bytes(), key))
        assert keygen_verify(message, allowed).returncode == 0
        assert check_release_signature(message, allowed, required=True) is not None


def _signed_message(tmp_path: Path, *allowed_options: str) -> tuple[Path, Path, Path]:
    key = make_key(tmp_path / "keys")
    lines = [f"{SIGNER} {options} {public(key)}".replace("  ", " ") for options in allowed_options]
    message = tmp_path / "m.manifest.json"
    message.write_text("{}\n")
    sign_file(message, key)
    return message, allowed_signers(tmp_path, *lines), key


@pytest.mark.parametrize(
    ("options", "now", "refusal", "message"),
    [
        pytest.param('valid-before="20260101"', datetime(2026, 6, 1, tzinfo=UTC), SignerExpired, "valid before 2026-01-01", id="expired-key"),
        pytest.param('valid-after="20270101000000Z"', datetime(2026, 6, 1, tzinfo=UTC), SignerExpired, "valid after 2027-01-01 00:00 UTC", id="key-not-yet-valid"),
        pytest.param('namespaces="git"', None, WrongNamespace, "may sign only namespaces 'git'", id="key-allowed-for-git-only"),
        pytest.param('namespaces="!movelib-release,*"', None, WrongNamespace, "may sign only namespaces", id="namespace-negated"),
    ],
)
def test_allowed_signer_options_are_enforced(tmp_path: Path, options: str, now: datetime | None, refusal: type[Exception], message: str) -> None:
    manifest, allowed, _key = _signed_message(tmp_path, options)
    with pytest.raises(refusal, match=message):
        check_release_signature(manifest, allowed, required=False, now=now)
    assert keygen_verify(manifest, allowed).returncode != 0  # ssh-keygen agrees


@pytest.mark.parametrize(
    ("options", "now"),
    [
        pytest.param('valid-after="20260101",valid-before="20270101"', datetime(2026, 6, 1, tzinfo=UTC), id="inside-the-window"),
        pytest.param('namespaces="git,movelib-*"', None, id="namespace-pattern"),
        pytest.param("", None, id="no-options"),
    ],
)
def test_allowed_signer_options_that_accept(tmp_path: Path, options: str, now: datetime | None) -> None:
    manifest, allowed, _key = _signed_message(tmp_path, options)
    assert check_release_signature(manifest, allowed, required=True, now=now) is not None


def test_a_second_line_for_the_same_key_can_allow_what_the_first_does_not(tmp_path: Path) -> None:
    manifest, allowed, _key = _signed_message(tmp_path, 'valid-before="20200101"', 'namespaces="movelib-release"')
    assert check_release_signature(manifest, allowed, required=True) is not None


def test_a_signature_for_another_namespace_is_refused(tmp_path: Path) -> None:
    manifest, allowed, key = _signed_message(tmp_path, "")
    keygen_sign(manifest, key, namespace="git")
    with pytest.raises(WrongNamespace, match="made for namespace 'git', not 'movelib-release'"):
        check_release_signature(manifest, allowed, required=False)


def test_unknown_tampered_and_missing(tmp_path: Path) -> None:
    manifest, allowed, _key = _signed_message(tmp_path, "")
    other = make_key(tmp_path / "keys", "stranger")
    sign_file(manifest, other)
    with pytest.raises(UnknownSigner, match=r"signed by ssh-ed25519 key SHA256:\S+, which is not in"):
        check_release_signature(manifest, allowed, required=False)
    with pytest.raises(UnknownSigner, match="which does not exist"):
        check_release_signature(manifest, tmp_path / "nowhere", required=False)
    manifest.write_text('{"edited": true}\n')
    with pytest.raises(SignatureMismatch, match="does not match the manifest"):
        check_release_signature(manifest, allowed, required=False)
    signature_path(manifest).unlink()
    assert check_release_signature(manifest, allowed, required=False) is None
    with pytest.raises(UnsignedRelease, match=r"m\.manifest\.json is unsigned"):
        check_release_signature(manifest, allowed, required=True)


def _armor(blob: bytes) -> str:
    return f"-----BEGIN SSH SIGNATURE-----\n{base64.b64encode(blob).decode()}\n-----END SSH SIGNATURE-----\n"


def _sshsig(key_blob: bytes, hashalg: bytes = b"sha512") -> bytes:
    return (b"SSHSIG" + (1).to_bytes(4, "big") + _string(key_blob) + _string(NAMESPACE.encode())
            + _string(b"") + _string(hashalg) + _string(_string(b"ssh-ed25519") + _string(bytes(64))))


ED25519_BLOB = _string(b"ssh-ed25519") + _string(bytes(32))
SK_BLOB = _string(b"sk-ssh-ed25519@openssh.com") + _string(bytes(32)) + _string(b"ssh:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("hello", "not an armored SSH signature", id="not-armored"),
        pytest.param("-----BEGIN SSH SIGNATURE-----\n%%%\n-----END SSH SIGNATURE-----", "not a valid SSH signature", id="bad-base64"),
        pytest.param(_armor(b"SSHSIX" + bytes(20)), "not SSHSIG version 1", id="wrong-magic"),
        pytest.param(_armor(_sshsig(ED25519_BLOB)[:-10]), "truncated", id="truncated"),
        pytest.param(_armor(_sshsig(SK_BLOB)), "made with a sk-ssh-ed25519@openssh.com key; movelib verifies ed25519, ecdsa and rsa", id="hardware-key"),
        pytest.param(_armor(_sshsig(ED25519_BLOB, b"md5")), "hashes the message with 'md5'", id="md5-hash"),
    ],
)
def test_a_malformed_or_unsupported_signature_is_refused(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "m.manifest.json"
    manifest.write_text("{}\n")
    signature_path(manifest).write_text(text)
    with pytest.raises(SignatureRefused, match=re.escape(message)):
        check_release_signature(manifest, tmp_path / "allowed", required=False)


def test_allowed_signers_lines_are_read_as_ssh_keygen_reads_them(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    text = textwrap.dedent(f"""\
        # comment

        {SIGNER},ops@example.com {public(key)} a comment
        "Release Engineer <re@example.com>" namespaces="git,movelib-release",valid-after="202601011200" {public(key)}
          ca@example.com cert-authority,valid-before="20300101Z" {public(key)}
        """)
    first, second, third = parse_allowed_signers(text, "signers")
    assert first.principals == f"{SIGNER},ops@example.com" and first.namespaces is None
    assert second.principals == "Release Engineer <re@example.com>"
    assert second.namespaces == "git,movelib-release" and second.allows_namespace(NAMESPACE)
    assert second.valid_after == datetime(2026, 1, 1, 12, 0).astimezone()  # no Z: local time
    assert third.cert_authority and third.valid_before == datetime(2030, 1, 1, tzinfo=UTC)
    # the project's own file: every line it gains (README: one per signer) is one ssh-keygen reads
    assert read_allowed_signers(ROOT / ".movelib" / "allowed_signers").skipped == []


def test_tests_trust_their_own_signers_never_the_projects(cli: Cli, migrated_db: Target, tmp_path: Path) -> None:
    """The project's .movelib/allowed_signers gains a line per real signer, as the README says:
    what a test trusts must not change with it."""
    assert settings().allowed_signers == NO_SIGNERS
    seed(migrated_db)
    dumped = dump(migrated_db, MIGRATIONS, tmp_path)
    result = cli("restore", "--dump-file", str(dumped.path), "--dsn", migrated_db.conninfo, "--dry-run")
    assert f"trust: the allowed_signers file {NO_SIGNERS.relative_to(ROOT)}\n" in result.stdout, result.output


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('{who} trust-me="yes" {key}', "unknown option 'trust-me'", id="unknown-option"),
        pytest.param("{who} ssh-ed25519 not-base64!", "not base64", id="bad-base64"),
        pytest.param("{who} ssh-rsa {blob}", "the line says ssh-rsa, the key is ssh-ed25519", id="type-mismatch"),
        pytest.param('{who} valid-after="next-week" {key}', '"next-week" is not a time', id="bad-time"),
        pytest.param('"{who} {key}', "unterminated quote", id="unterminated-quote"),
        pytest.param("{who} namespaces {key}", "option 'namespaces' needs a value", id="option-without-value"),
        pytest.param("{who} namespaces= {key}", "namespaces= has no value in double quotes", id="option-with-empty-value"),
        pytest.param('{who} namespaces="git",namespaces="{ns}" {key}', "more than one namespaces=", id="duplicate-option"),
        pytest.param('{who} valid-after="20300101",valid-before="20200101" {key}', "valid-before is not later than valid-after", id="window-backwards"),
    ],
)
def test_a_line_ssh_keygen_cannot_read_is_skipped_and_named(tmp_path: Path, line: str, message: str) -> None:
    """ssh-keygen skips such a line (and so trusts nothing from it); movelib does the same and
    says which line and why when the key is then unknown."""
    key = make_key(tmp_path / "keys")
    text = line.format(who=SIGNER, key=public(key), blob=public(key).split()[1], ns=NAMESPACE)
    allowed = allowed_signers(tmp_path, text)
    trusted = read_allowed_signers(allowed)
    assert trusted.signers == []
    assert len(trusted.skipped) == 1 and message in trusted.skipped[0], trusted.skipped
    assert trusted.skipped[0].startswith(f"{allowed}:2: ")
    manifest = tmp_path / "m.manifest.json"
    manifest.write_text("{}\n")
    sign_file(manifest, key)
    with pytest.raises(UnknownSigner, match=re.escape(message)):
        check_release_signature(manifest, allowed, required=True)
    assert keygen_verify(manifest, allowed).returncode != 0  # ssh-keygen agrees


# -- releases ---------------------------------------------------------------------------------


def test_a_signed_release_is_checked_by_ssh_keygen_git_and_restore(cli: Cli, release_repo: Path, migrated_db: Target, pg18: Server, tmp_path: Path) -> None:
    seed(migrated_db)
    key = make_key(tmp_path / "keys")
    # one file for both: git checks tags in the "git" namespace, movelib manifests in its own
    allowed = allowed_signers(tmp_path, f'{SIGNER} namespaces="git,{NAMESPACE}" {public(key)}')
    result = release(migrated_db, release_repo, MIGRATIONS, "v1.0", tag=True, sign_key=key,
                     allowed_signers=allowed)
    manifest = result.dump.manifest_path
    assert result.signed is not None and result.signed.path == signature_path(manifest)
    assert result.signed.principals == [SIGNER]
    checked = keygen_verify(manifest, allowed)
    assert checked.returncode == 0, checked.stderr
    tag = subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-tag", "v1.0-seed"],
                         cwd=release_repo, capture_output=True, text=True, check=False)
    assert tag.returncode == 0, tag.stderr
    assert f'Good "git" signature for {SIGNER}' in tag.stderr
    committed = git(release_repo, "show", "--name-only", "--format=", "v1.0-seed").split()
    assert f"releases/v1.0/{signature_path(manifest).name}" in committed
    assert git(release_repo, "status", "--porcelain") == ""

    with database(pg18, "movelib_template") as other:
        dsn = pg18.dsn(other)
        restored = cli("restore", "--dump-file", str(result.dump.path), "--dsn", dsn, "--yes",
                       "--require-signature", env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(allowed)})
        assert restored.code == 0, restored.output
        assert f"signature: good, by {SIGNER} (ED25519 {result.signed.key.fingerprint}), from {allowed}" in restored.stdout
        assert table_hashes(target_from_dsn(dsn, "--dsn")) == table_hashes(migrated_db)
        assert_no_secret(restored.output)


def test_a_release_that_cannot_be_signed_leaves_nothing(release_repo: Path, migrated_db: Target, tmp_path: Path) -> None:
    seed(migrated_db)
    with pytest.raises(SigningError, match="does not exist"):
        release(migrated_db, release_repo, MIGRATIONS, "v1.0", tag=True, sign_key=tmp_path / "no-such-key")
    assert not (release_repo / "releases").exists()
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    os.chmod(garbage, 0o600)
    with pytest.raises(SigningError, match="ssh-keygen could not sign"):
        release(migrated_db, release_repo, MIGRATIONS, "v1.0", tag=True, sign_key=garbage)
    assert list((release_repo / "releases" / "v1.0").iterdir()) == []  # the dump went too
    assert git(release_repo, "tag") == ""
    key = make_key(tmp_path / "keys")
    result = release(migrated_db, release_repo, MIGRATIONS, "v1.0", sign_key=key)  # so it can be cut again
    assert result.signed is not None and result.signed.principals == []  # not trusted yet
    assert result.tag is None


def test_release_refuses_a_missing_key_before_it_connects(cli: Cli, tmp_path: Path) -> None:
    result = cli("release", "--version", "v9.9", "--sign", str(tmp_path / "no-such-key"))
    assert result.code == 2 and "signing key" in result.stderr and "does not exist" in result.stderr
    assert "target:" not in result.stdout
    assert not (ROOT / "releases" / "v9.9").exists()


def test_git_never_rewrites_the_line_endings_of_a_release() -> None:
    """core.autocrlf (Windows) would break every sha256 and signature of a checked-out release."""
    paths = ["releases/v1.0/movements_seed_20260101_000000.sql",
             "releases/v1.0/movements_seed_20260101_000000.manifest.json",
             "releases/v1.0/movements_seed_20260101_000000.manifest.json.sig"]
    out = git(ROOT, "check-attr", "text", "--", *paths)
    assert out.splitlines() == [f"{p}: text: unset" for p in paths]


# -- restores that need a signature -----------------------------------------------------------


@pytest.fixture
def signed_dump(migrated_db: Target, tmp_path: Path) -> tuple[Path, Path]:
    """A dump of the canonical library, signed by a key the allowed_signers file trusts."""
    seed(migrated_db)
    key = make_key(tmp_path / "keys")
    path = dump(migrated_db, MIGRATIONS, tmp_path / "dumps").path
    sign_file(manifest_path(path), key)
    return path, key


@contextmanager
def older_target(cli: Cli, pg18: Server, tmp_path: Path, label: str | None) -> Iterator[Target]:
    """A database holding five placeholders, optionally labelled (production...)."""
    with database(pg18, "movelib_template") as name:
        target = target_from_dsn(pg18.dsn(name), "--dsn")
        older = tmp_path / "older.json"
        older.write_text(json.dumps(json.loads(CANONICAL.read_text())[:5]))
        seed(target, older)
        if label:
            assert cli("migrate", "--dsn", target.conninfo, "--environment", label).code == 0
        yield target


def _forge(dump_file: Path) -> None:
    """Edit the dump and make its manifest agree: the manifest alone cannot catch this."""
    dump_file.write_text(dump_file.read_text().replace("Back Squat", "Back Squad"))
    mpath = manifest_path(dump_file)
    data = json.loads(mpath.read_text())
    data["size"], data["sha256"] = file_sha256(dump_file)
    mpath.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


REFUSALS = [
    pytest.param("forged-dump-and-manifest", "", [], "does not match the manifest", id="tampered-manifest"),
    pytest.param("stranger", "", [], "which is not in", id="unknown-signer"),
    pytest.param(None, 'valid-before="20200101"', [], "key is valid before 2020-01-01", id="expired-key"),
    pytest.param("namespace-git", "", [], "made for namespace 'git'", id="wrong-namespace"),
    pytest.param(None, 'namespaces="git"', [], "may sign only namespaces 'git'", id="key-not-allowed-for-releases"),
    pytest.param("garbage", "", [], "is not a valid SSH signature", id="garbage-signature"),
    pytest.param("unsigned", "", ["--require-signature"], "is unsigned", id="unsigned-with-require-signature"),
    pytest.param("unsigned", "", ["production"], "is unsigned", id="unsigned-into-production"),
    pytest.param("stranger", "", ["production"], "not pinned in", id="unknown-signer-into-production"),
]
# who signed is judged against the target's trust source (its pinned signers when it is labelled
# production, else the allowed_signers file), read in a read-only look at it: these refusals come
# after that look; a signature that is malformed, for another namespace or over other bytes is
# refused before any connection, as is an unsigned dump with --require-signature


@pytest.mark.parametrize(("how", "options", "extra", "message"), REFUSALS)
def test_restore_refuses(cli: Cli, signed_dump: tuple[Path, Path], pg18: Server, tmp_path: Path, how: str | None, options: str, extra: list[str], message: str) -> None:
    dump_file, key = signed_dump
    allowed = allowed_signers(tmp_path, f"{SIGNER} {options} {public(key)}".replace("  ", " "))
    manifest = manifest_path(dump_file)
    if how == "forged-dump-and-manifest":
        _forge(dump_file)
    elif how == "stranger":
        sign_file(manifest, make_key(tmp_path / "keys", "stranger"))
    elif how == "namespace-git":
        keygen_sign(manifest, key, namespace="git")
    elif how == "garbage":
        signature_path(manifest).write_text("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")
    elif how == "unsigned":
        signature_path(manifest).unlink()
    with older_target(cli, pg18, tmp_path, "production" if "production" in extra else None) as target:
        if "production" in extra:
            pin_key(target, key)  # the release key is pinned; a stranger's is not
        before = table_hashes(target)
        args = ["--require-signature"] if "--require-signature" in extra else []
        if "production" in extra:
            args += ["--allow-protected", "--confirm", target.dbname]
        result = cli("restore", "--dump-file", str(dump_file), "--dsn", target.conninfo, "--yes", *args,
                     env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(allowed)})
        assert result.code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert "Traceback" not in result.output
        judged = how == "stranger" or bool(options) or "production" in extra
        assert restore_connected(result.stdout) == judged, result.stdout
        assert table_hashes(target) == before


def test_a_signed_release_restores_into_production(cli: Cli, signed_dump: tuple[Path, Path], pg18: Server, migrated_db: Target, tmp_path: Path) -> None:
    dump_file, key = signed_dump
    allowed = allowed_signers(tmp_path, f"{SIGNER} {public(key)}")
    with older_target(cli, pg18, tmp_path, "production") as target:
        args = ["--dump-file", str(dump_file), "--dsn", target.conninfo, "--yes", "--allow-protected",
                "--confirm", target.dbname]
        unpinned = cli("restore", *args, env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(allowed)})
        assert unpinned.code == 1 and "nothing is pinned" in unpinned.stderr, unpinned.output
        pin_key(target, key)
        result = cli("restore", *args, env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(tmp_path / "nobody")})
        assert result.code == 0, result.output
        assert f"signature: good, by {SIGNER}" in result.stdout
        assert library_state(target) == library_state(migrated_db)


def test_an_unsigned_dump_still_restores_where_no_signature_is_required(cli: Cli, signed_dump: tuple[Path, Path], pg18: Server, tmp_path: Path) -> None:
    dump_file, _key = signed_dump
    signature_path(manifest_path(dump_file)).unlink()
    with older_target(cli, pg18, tmp_path, "staging") as target:
        result = cli("restore", "--dump-file", str(dump_file), "--dsn", target.conninfo, "--yes",
                     env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(tmp_path / "none")})
        assert result.code == 0, result.output
        assert "signature: none" in result.stdout
