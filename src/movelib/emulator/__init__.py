"""Local PostgreSQL emulators, one per profile (``inv db.*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import BackendUnavailable, ConfigError
from ..profiles import Profile
from .base import EmulatorStatus
from .embedded import Echo, EmbeddedEmulator
from .pgbin import resolve_bin_dir

BACKENDS = ("auto", "embedded", "docker")

__all__ = [
    "BACKENDS",
    "EmbeddedEmulator",
    "Emulator",
    "EmulatorSettings",
    "EmulatorStatus",
    "get_emulator",
]


class Emulator(Protocol):
    backend: str
    profile: Profile

    def up(self, echo: Echo = ...) -> bool: ...
    def down(self, purge: bool = False) -> bool: ...
    def status(self) -> EmulatorStatus: ...
    def logs(self, lines: int = 50) -> str: ...


@dataclass(frozen=True)
class EmulatorSettings:
    base_dir: Path
    bin_dir: str | None = None
    system_user: str = "movelib"
    server_settings: Mapping[str, str] = field(default_factory=dict)


def get_emulator(profile: Profile, backend: str, settings: EmulatorSettings) -> Emulator:
    """The emulator of ``profile`` on ``backend`` (``auto`` picks what this machine has)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "docker":
        raise BackendUnavailable(
            "the docker backend is not available yet; use --backend embedded (the default)"
        )
    return EmbeddedEmulator(
        profile,
        base_dir=settings.base_dir,
        bin_dir=resolve_bin_dir(settings.bin_dir),
        system_user=settings.system_user,
        settings=settings.server_settings,
    )
