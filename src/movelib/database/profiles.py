"""The emulator profiles: where each local PostgreSQL emulator listens and how to log in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import quote

from ..base.defaults import DEFAULT_PROFILES
from ..base.errors import ConfigError

DEFAULT_PROFILE = "local"


@dataclass(frozen=True)
class Profile:
    name: str
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self) -> str:
        """The DSN, password included: hand it to libpq, never to a terminal."""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )


def load_profiles(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Profile]:
    """The default profiles with ``overrides`` (e.g. invoke config) laid over them.

    An override may change any field of a known profile or define a new profile in full.
    """
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DEFAULT_PROFILES.items()}
    for name, values in (overrides or {}).items():
        merged.setdefault(name, {}).update(dict(values))
    names = {f.name for f in fields(Profile)} - {"name"}
    profiles: dict[str, Profile] = {}
    for name, values in merged.items():
        missing = sorted(names - values.keys())
        if missing:
            raise ConfigError(f"profile {name!r} is missing {', '.join(missing)}")
        try:
            port = int(values["port"])
        except (TypeError, ValueError):
            raise ConfigError(f"profile {name!r}: port must be a number") from None
        if not 0 < port < 65536:
            raise ConfigError(f"profile {name!r}: port {port} is out of range")
        profiles[name] = Profile(
            name=name,
            host=str(values["host"]),
            port=port,
            user=str(values["user"]),
            password=str(values["password"]),
            database=str(values["database"]),
        )
    return profiles


def get_profile(profiles: Mapping[str, Profile], name: str) -> Profile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown profile {name!r}; known profiles: {known}") from None
