"""Servers set up as managed services are: TLS only, behind a transaction pooler, least privilege.

Everything here is real: certificates made with ``cryptography`` for the test, a PostgreSQL 15
server (Debian's binaries, built with TLS) whose ``pg_hba.conf`` has ``hostssl`` lines only, and
Debian's ``pgbouncer`` in ``pool_mode = transaction`` in front of a test server.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import SENTINEL_PASSWORD, TEST_USER, free_port, port_open

from movelib.base.defaults import SYSTEM_USER
from movelib.database.emulator.pgbin import server_user

PGBOUNCER = os.environ.get("MOVELIB_TEST_PGBOUNCER") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server's certificate
    server_cert: Path
    server_key: Path
    other_ca: Path  # a CA that signed nothing of this server's


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_pem(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate it signs for ``localhost`` and ``127.0.0.1``, and a second,
    unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = _key()
        cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("movelib test CA")
    _other_key, other_cert = ca("some other CA")
    server_key = _key()
    server_cert = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Pki(
        ca=_write_pem(folder / "ca.crt", ca_cert.public_bytes(pem)),
        server_cert=_write_pem(folder / "server.crt", server_cert.public_bytes(pem)),
        server_key=_write_pem(folder / "server.key", key_pem, 0o600),
        other_ca=_write_pem(folder / "other-ca.crt", other_cert.public_bytes(pem)),
    )


def tls_settings(pki: Pki, folder: Path) -> dict[str, str]:
    """postgresql.conf settings for a server that takes logins over TLS only (``hostssl``)."""
    hba = folder / "pg_hba_tls_only.conf"
    hba.write_text("# TLS only, as managed services: no 'host' line, so no plain TCP login\n"
                   "hostssl all all 127.0.0.1/32 scram-sha-256\n"
                   "hostssl all all ::1/128 scram-sha-256\n")
    user = server_user(SYSTEM_USER)
    for path in (hba, pki.server_cert, pki.server_key, pki.ca):
        user.own(path)
    user.make_reachable(folder)
    user.make_reachable(pki.ca.parent)
    return {"ssl": "on", "ssl_cert_file": str(pki.server_cert), "ssl_key_file": str(pki.server_key),
            "hba_file": str(hba)}


# -- PgBouncer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pooler:
    port: int
    server_port: int

    def dsn(self, dbname: str) -> str:
        return (f"postgresql://{TEST_USER}:{quote(SENTINEL_PASSWORD, safe='')}@127.0.0.1:"
                f"{self.port}/{dbname}")


@contextmanager
def pgbouncer(folder: Path, server_port: int, pool_size: int = 2) -> Iterator[Pooler]:
    """PgBouncer in transaction mode in front of the server on ``server_port``, with fewer
    server connections than the tests have clients, so clients share them."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "users.txt").write_text(f'"{TEST_USER}" "{SENTINEL_PASSWORD}"\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={server_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 200\nserver_reset_query =\nserver_round_robin = 1\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
        "admin_users =\nquery_wait_timeout = 120\n")
    user = server_user(SYSTEM_USER)
    user.make_reachable(folder)
    for path in (folder, folder / "users.txt", folder / "pgbouncer.ini"):
        user.own(path)
    kwargs: dict[str, object] = {}
    if user.uid is not None:  # pgbouncer refuses to run as root
        kwargs.update(user=user.uid, group=user.gid, extra_groups=[])
    proc = subprocess.Popen([PGBOUNCER, str(folder / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            **kwargs)  # type: ignore[call-overload]
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (folder / "pgbouncer.log").read_text(errors="replace") \
                    if (folder / "pgbouncer.log").exists() else ""
                raise RuntimeError(f"pgbouncer did not start (exit {proc.poll()}):\n{log[-2000:]}")
            time.sleep(0.1)
        yield Pooler(port, server_port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
