"""Settings of a project checkout, built from a plain mapping (invoke's config, or a dict)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..base.defaults import DEFAULTS, FileLimits
from ..base.errors import ConfigError
from .emulator import Emulator, EmulatorSettings, get_emulator
from .profiles import DEFAULT_PROFILE, Profile, get_profile, load_profiles
from .target import Target, resolve_target


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    merged = dict(DEFAULTS[name]) if isinstance(DEFAULTS[name], dict) else {}
    value = config.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"setting {name!r} must be a mapping")
    merged.update(value)
    return merged


def _count(section: Mapping[str, Any], key: str) -> int:
    value = section[key]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting limits.{key} must be a whole number, not {value!r}") from None
    if number < 1:
        raise ConfigError(f"setting limits.{key} must be at least 1")
    return number


@dataclass(frozen=True)
class Settings:
    root: Path
    profiles: dict[str, Profile]
    emulator: EmulatorSettings
    backend: str
    data_file: Path
    schema_file: Path
    migrations_dir: Path
    dotenv_path: Path
    lock_timeout: float
    file_limits: FileLimits
    allowed_signers: Path

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any], root: Path) -> Settings:
        root = Path(root).absolute()
        emulator = _section(config, "emulator")
        paths = _section(config, "paths")
        limits = _section(config, "limits")

        def path(value: Any) -> Path:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else root / p

        return cls(
            root=root,
            profiles=load_profiles(config.get("profiles") or {}),
            emulator=EmulatorSettings(
                base_dir=path(emulator["dir"]),
                bin_dir=str(emulator["bin_dir"]) or None,
                system_user=str(emulator["system_user"]),
                server_settings={str(k): str(v) for k, v in dict(emulator["server_settings"]).items()},
                image=str(emulator["image"]),
                project=str(emulator["project"]),
            ),
            backend=str(emulator["backend"]),
            data_file=path(paths["data_file"]),
            schema_file=path(paths["schema_file"]),
            migrations_dir=path(paths["migrations_dir"]),
            dotenv_path=path(paths["dotenv"]),
            lock_timeout=float(config.get("lock_timeout", DEFAULTS["lock_timeout"])),
            allowed_signers=path(paths["allowed_signers"]),
            file_limits=FileLimits(**{key: _count(limits, key) for key in limits
                                      if key in DEFAULTS["limits"]}),
        )

    def target(self, dsn: str | None = None, profile: str | None = None) -> Target:
        return resolve_target(
            dsn=dsn, profile=profile, profiles=self.profiles, dotenv_path=self.dotenv_path
        )

    def profile(self, name: str | None) -> Profile:
        return get_profile(self.profiles, name or DEFAULT_PROFILE)

    def emulator_for(self, profile: str | None, backend: str | None = None, *,
                     image: str | None = None) -> Emulator:
        settings = replace(self.emulator, image=image) if image else self.emulator
        return get_emulator(self.profile(profile), backend or self.backend, settings)

    def path(self, value: str | None, default: Path) -> Path:
        """An option's path (relative to the working directory) or the configured default."""
        return Path(value).absolute() if value else default
