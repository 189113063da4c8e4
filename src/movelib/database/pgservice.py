"""Naming a database without its password on the command line, as PostgreSQL users already do.

* ``env:NAME``: the DSN is the value of the environment variable ``NAME`` (``--dsn
  env:PRODUCTION_URL``): the process list shows the variable's name, never its value.
* ``service=NAME``: libpq's connection service file (``PGSERVICEFILE``, else
  ``~/.pg_service.conf``, then ``pg_service.conf`` in ``PGSYSCONFDIR``), read here only to say
  which host and database the target is before connecting; libpq reads it again to connect,
  and the psql a task starts gets ``PGSERVICE``.
* ``.pgpass`` (or ``PGPASSFILE``): a DSN without a password; libpq finds it there, in movelib's
  connections and in psql's alike. Nothing here is needed for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ..base.errors import InvalidTarget
from ..base.text import shown

ENV_PREFIX = "env:"


def from_environment(value: str, source: str, environ: Mapping[str, str] | None = None) -> str:
    """The DSN ``env:NAME`` names (``value`` itself when it is not of that form)."""
    if not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):]
    env = os.environ if environ is None else environ
    if not name.isidentifier():
        raise InvalidTarget(f"{source} {shown(value, 60)}: give env:NAME, NAME an environment "
                            "variable's name (e.g. env:PRODUCTION_URL)")
    found = env.get(name, "").strip()
    if not found:
        raise InvalidTarget(f"{source} {value}: the environment variable {name} is not set (or is "
                            "empty) in this shell")
    return found


def service_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where libpq looks for a service, in its order."""
    env = os.environ if environ is None else environ
    files = []
    if env.get("PGSERVICEFILE"):
        files.append(Path(env["PGSERVICEFILE"]))
    else:
        home = env.get("APPDATA") if sys.platform == "win32" else env.get("HOME")
        if home:
            files.append(Path(home) / ("postgresql/.pg_service.conf" if sys.platform == "win32"
                                       else ".pg_service.conf"))
    if env.get("PGSYSCONFDIR"):
        files.append(Path(env["PGSYSCONFDIR"]) / "pg_service.conf")
    return files


def service_params(name: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The connection parameters of service ``name``, from the first file that defines it."""
    files = service_files(environ)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidTarget(f"cannot read the service file {path} ({exc.__class__.__name__})") \
                from None
        found = _section(text, name, path)
        if found is not None:
            return found
    where = ", ".join(str(p) for p in files) or "no file (set PGSERVICEFILE)"
    raise InvalidTarget(f"service {shown(name, 60)} is not defined in {where}")


def _section(text: str, name: str, path: Path) -> dict[str, str] | None:
    """The ``key=value`` lines of ``[name]`` in a service file's text (libpq's format:
    ``#`` comments, blank lines, one setting per line), or None when it has no such section."""
    section: str | None = None
    found: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InvalidTarget(f"{path}:{number}: a section line is [name]")
            section = line[1:-1].strip()
            if section == name:
                found = {}
            continue
        if section != name or found is None:
            continue
        key, equals, value = line.partition("=")
        if not equals:
            raise InvalidTarget(f"{path}:{number}: expected key=value in service {shown(name, 60)}")
        found[key.strip()] = value.strip()
    return found
