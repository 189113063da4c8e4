"""Which database a task is about to touch, decided the same way for every task.

Order: ``--dsn``; else an explicitly given ``--profile``; else ``PLANNING_DATABASE_URL`` from
the environment; else the same from ``.env`` (which never overrides the environment); else the
default profile (``local``). An explicit ``--profile`` beats the environment on purpose: a
developer who types ``--profile staging`` must get staging even when a production DSN is
exported in the same shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from ..base import secrets
from ..base.errors import InvalidTarget
from ..base.text import shown
from .pgservice import ENV_PREFIX, from_environment, service_params
from .profiles import DEFAULT_PROFILE, Profile, get_profile

ENV_VAR = "PLANNING_DATABASE_URL"
_HIDDEN_PARAMS = {"password", "passfile", "sslpassword"}


@dataclass(frozen=True)
class Target:
    """A database to connect to. ``conninfo`` carries the password: never print it."""

    conninfo: str = field(repr=False)
    source: str
    profile: Profile | None = None

    @property
    def params(self) -> dict[str, str]:
        """The connection parameters, a ``service``'s own among them (:func:`_params`)."""
        return _params(self.conninfo)

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    def masked(self) -> str:
        """The DSN as a URL with the password replaced by ``***``."""
        return mask_conninfo(self.conninfo)

    def describe(self) -> str:
        """``<masked DSN> (profile staging)`` or ``<masked DSN> (from --dsn)``."""
        if self.profile is not None:
            return f"{self.masked()} (profile {self.profile.name})"
        return f"{self.masked()} (from {self.source})"

    def again(self) -> str:
        """The option that names this target again in a hint to paste (`` --profile staging``);
        a DSN is never pasted (its password is masked): `` --dsn <the DSN>`` says where it goes.
        Empty when the target came from the environment (it resolves the same way again)."""
        if self.profile is not None:
            return f" --profile {self.profile.name}"
        if f" {ENV_PREFIX}" in self.source:  # "--dsn env:NAME": pasteable as it was typed
            return f" --dsn {self.source.split(' ', 1)[1]}"
        if self.source.startswith("--"):
            return " --dsn <the DSN>"
        return ""

    def libpq_env(self) -> dict[str, str]:
        """Connection settings as libpq environment variables, for child processes.

        Passing them this way keeps the password off the child's command line, which any
        user of the machine can read in ``/proc/<pid>/cmdline``.
        """
        names = {
            "host": "PGHOST",
            "hostaddr": "PGHOSTADDR",
            "port": "PGPORT",
            "user": "PGUSER",
            "password": "PGPASSWORD",
            "dbname": "PGDATABASE",
            "sslmode": "PGSSLMODE",
            "requiressl": "PGREQUIRESSL",
            "sslnegotiation": "PGSSLNEGOTIATION",
            "sslrootcert": "PGSSLROOTCERT",
            "sslcert": "PGSSLCERT",
            "sslkey": "PGSSLKEY",
            "sslcertmode": "PGSSLCERTMODE",
            "sslcrl": "PGSSLCRL",
            "sslcrldir": "PGSSLCRLDIR",
            "sslsni": "PGSSLSNI",
            "sslcompression": "PGSSLCOMPRESSION",
            "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
            "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
            "channel_binding": "PGCHANNELBINDING",
            "require_auth": "PGREQUIREAUTH",
            "gssencmode": "PGGSSENCMODE",
            "krbsrvname": "PGKRBSRVNAME",
            "gsslib": "PGGSSLIB",
            "gssdelegation": "PGGSSDELEGATION",
            "load_balance_hosts": "PGLOADBALANCEHOSTS",
            "service": "PGSERVICE",
            "client_encoding": "PGCLIENTENCODING",
            "connect_timeout": "PGCONNECT_TIMEOUT",
            "options": "PGOPTIONS",
            "application_name": "PGAPPNAME",
            "passfile": "PGPASSFILE",
            "target_session_attrs": "PGTARGETSESSIONATTRS",
        }
        env = {}
        for key, value in self.params.items():
            if key not in names:
                raise InvalidTarget(
                    f"connection parameter {key!r} of {self.masked()} cannot be passed to "
                    "PostgreSQL's command-line tools"
                )
            env[names[key]] = value
        return env


def mask_conninfo(conninfo: str) -> str:
    params = _params(conninfo)
    user = params.pop("user", "")
    password = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    for hidden in _HIDDEN_PARAMS:
        if hidden in params:
            params[hidden] = secrets.MASK
    auth = ""
    if user:
        auth = quote(user, safe="") + (f":{secrets.MASK}" if password is not None else "") + "@"
    elif password is not None:
        auth = f":{secrets.MASK}@"
    netloc = host if "," in host or ":" not in host else f"[{host}]"
    if port:
        netloc += f":{port}"
    query = f"?{urlencode(params, safe='*/')}" if params else ""
    return f"postgresql://{auth}{netloc}/{quote(dbname, safe='')}{query}"


_URL_SCHEMES = ("postgresql://", "postgres://")
_AMBIGUOUS = (
    "the DSN cannot be read safely: its user name or password holds a character that must be "
    "percent-encoded in a URL (@ / : ? # % or a space; p@ss is written p%40ss), or give "
    "key=value pairs; no part of it is shown"
)


def _check_url_userinfo(conninfo: str) -> None:
    """Refuse a URL whose user name or password holds an unencoded ``@`` or ``/``.

    libpq ends the credentials at the first ``@`` before any ``/``: with ``p@ss`` as password it
    reads ``ss@host`` as the host, with ``pa/ss`` it reads ``pa`` as the port, and the rest of the
    password would be printed as a host, port or database name. An ``@`` anywhere after the
    credentials libpq found (host, port, path and query hold none unencoded) means they were cut
    short.
    """
    lowered = conninfo[:16].lower()
    scheme = next((s for s in _URL_SCHEMES if lowered.startswith(s)), None)
    if scheme is None:
        return
    rest = conninfo[len(scheme):]
    end = next((i for i, ch in enumerate(rest) if ch in "@/"), len(rest))
    remainder = rest[end + 1:] if end < len(rest) and rest[end] == "@" else rest
    if "@" in remainder:
        raise InvalidTarget(_AMBIGUOUS)


def _parse(conninfo: str) -> dict[str, str]:
    import psycopg.conninfo  # here: resolving settings must not load the driver

    _check_url_userinfo(conninfo)
    try:
        parsed = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        # libpq's message may quote the DSN, password included: say it in our own words, with
        # the one part that is safe to show, the name of a parameter libpq does not know.
        import re

        unknown = re.search(r'invalid (?:URI query parameter|connection option):? "([^"=&\s]{1,64})"',
                            str(exc))
        if unknown is not None:
            raise InvalidTarget(
                f"the DSN names a connection parameter libpq does not know: "
                f"{shown(unknown.group(1))!r}; check its spelling (libpq's parameters: sslmode, "
                "sslrootcert, connect_timeout, application_name, krbsrvname, ...)") from None
        raise InvalidTarget(
            "the DSN cannot be parsed; expected postgresql://user:password@host:port/database "
            "(percent-encode @ : / % # in the password) or key=value pairs"
        ) from None
    return {k: str(v) for k, v in parsed.items()}


def _params(conninfo: str) -> dict[str, str]:
    """``conninfo``'s parameters; with ``service=NAME``, the service's own under them, as libpq
    merges them (what the DSN says wins)."""
    params = _parse(conninfo)
    if "service" in params:
        return {**service_params(params["service"]), **params}
    return params


def target_from_dsn(dsn: str, source: str) -> Target:
    """The target a DSN names: a URL, ``key=value`` pairs (``service=NAME`` among them), or
    ``env:NAME``, the value of an environment variable (:mod:`movelib.database.pgservice`)."""
    dsn = dsn.strip()
    if not dsn:
        raise InvalidTarget(f"{source} is empty")
    if dsn.startswith(ENV_PREFIX):
        dsn, source = from_environment(dsn, source), f"{source} {dsn}"
    params = _params(dsn)
    secrets.register(
        params.get("password"),
        public=(params.get("user", ""), params.get("host", ""), params.get("dbname", "")),
    )
    return Target(conninfo=dsn, source=source)


def target_from_profile(profile: Profile) -> Target:
    secrets.register(profile.password, public=(profile.user, profile.host, profile.database))
    return Target(conninfo=profile.url(), source="profile", profile=profile)


def resolve_target(
    *,
    dsn: str | None,
    profile: str | None,
    profiles: Mapping[str, Profile],
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
) -> Target:
    """Decide the target; see the module docstring for the order."""
    if dsn and profile:
        raise InvalidTarget("give either --dsn or --profile, not both")
    if dsn:
        return target_from_dsn(dsn, "--dsn")
    if profile:
        return target_from_profile(get_profile(profiles, profile))
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return target_from_dsn(env[ENV_VAR], ENV_VAR)
    if dotenv_path is not None and dotenv_path.is_file():
        value = read_dotenv(dotenv_path).get(ENV_VAR)
        if value:
            return target_from_dsn(value, f"{ENV_VAR} in {dotenv_path.name}")
    return target_from_profile(get_profile(profiles, DEFAULT_PROFILE))


def read_dotenv(path: Path) -> dict[str, str | None]:
    """The variables of a ``.env`` file; a line python-dotenv cannot parse is an error (it
    would only warn and skip it, and the task would go on to the local profile unnoticed).

    The warning is python-dotenv's public signal for such a line: it is caught here, on its
    logger, and neither printed nor passed on."""
    import logging

    from dotenv import dotenv_values

    class Unparsed(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(str(record.args[0]) if isinstance(record.args, tuple)
                              and record.args else "?")

    logger = logging.getLogger("dotenv.main")
    unparsed, propagate = Unparsed(), logger.propagate
    logger.addHandler(unparsed)
    logger.propagate = False
    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidTarget(f"cannot read {path.name}: {exc.__class__.__name__}") from None
    finally:
        logger.removeHandler(unparsed)
        logger.propagate = propagate
    bad = unparsed.lines
    if bad:
        lines = ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise InvalidTarget(
            f"{path.name} cannot be parsed (line {lines}); fix it: lines are NAME=value, "
            "comments start with #, values with spaces are quoted (the lines are not shown: "
            "they may hold a password)")
    return values
