"""Local PostgreSQL emulators, one per profile (``inv db.*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..defaults import DOCKER_PROJECT, SYSTEM_USER
from ..errors import ConfigError
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
    system_user: str = SYSTEM_USER
    server_settings: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    project: str = DOCKER_PROJECT  # docker backend: names and labels containers and volumes


def get_emulator(
    profile: Profile, backend: str, settings: EmulatorSettings, *, starting: bool = False
) -> Emulator:
    """The emulator of ``profile`` on ``backend``.

    ``auto`` starts on docker when an engine answers and on the embedded server otherwise; to
    inspect or stop (``starting=False``) it picks the backend that holds the profile.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = _pick(profile, settings, starting)
    if backend == "docker":
        from .container import DockerEmulator

        emulator = DockerEmulator(profile, image=settings.image, project=settings.project)
        emulator.client  # noqa: B018 - fail now, with the message, if no engine answers
        return emulator
    return _embedded(profile, settings)


def _pick(profile: Profile, settings: EmulatorSettings, starting: bool) -> str:
    """docker when an engine answers and (to start) already has the image; else embedded."""
    from .container import DockerEmulator, engine_answers

    if not starting and (settings.base_dir / profile.name / "pgdata").exists():
        return "embedded"
    if not engine_answers():
        return "embedded"
    if starting:
        emulator = DockerEmulator(profile, image=settings.image, project=settings.project)
        if not emulator.has_image():
            return "embedded"  # auto never waits on a pull that may not work; --backend docker does
    return "docker"


def _embedded(profile: Profile, settings: EmulatorSettings) -> EmbeddedEmulator:
    return EmbeddedEmulator(
        profile,
        base_dir=settings.base_dir,
        bin_dir=resolve_bin_dir(settings.bin_dir),
        system_user=settings.system_user,
        settings=settings.server_settings,
    )
