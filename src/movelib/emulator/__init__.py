"""Local PostgreSQL emulators, one per profile (``inv db.*``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..defaults import DOCKER_PROJECT, SYSTEM_USER
from ..errors import ConfigError, EmulatorError
from ..profiles import Profile
from .base import EmulatorStatus, port_answers
from .embedded import Echo, EmbeddedEmulator
from .pgbin import resolve_bin_dir

if TYPE_CHECKING:
    from ..target import Target

BACKENDS = ("auto", "embedded", "docker")

__all__ = [
    "BACKENDS",
    "EmbeddedEmulator",
    "Emulator",
    "EmulatorSettings",
    "EmulatorStatus",
    "choose_backend",
    "get_emulator",
    "start_if_stopped",
]


class Emulator(Protocol):
    backend: str
    profile: Profile
    reason: str  # why this backend, for db.status

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


def get_emulator(profile: Profile, backend: str, settings: EmulatorSettings) -> Emulator:
    """The emulator of ``profile`` on ``backend``; ``auto`` follows :func:`choose_backend`.

    The emulator's ``reason`` says why that backend (``db.status`` shows it).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    reason = f"backend {backend} (set)"
    if backend == "auto":
        backend, reason = choose_backend(profile, settings)
    emulator: Emulator
    if backend == "docker":
        from .container import DockerEmulator

        emulator = DockerEmulator(profile, image=settings.image, project=settings.project)
        emulator.client  # noqa: B018 - fail now, with the message, if no engine answers
    else:
        emulator = _embedded(profile, settings)
    emulator.reason = reason
    return emulator


def choose_backend(profile: Profile, settings: EmulatorSettings) -> tuple[str, str]:
    """``auto``, one rule for starting, inspecting and stopping alike: the backend that already
    holds the profile's data; else docker when an engine answers and has the image; else
    embedded. (``auto`` never waits on a pull that may not work; ``--backend docker`` pulls.)
    Returns the backend and why, in a few words."""
    from ..errors import BackendUnavailable
    from .container import DockerEmulator, docker_client

    if (settings.base_dir / profile.name / "pgdata").exists():
        return "embedded", f"auto: its data is in {settings.base_dir.name}/{profile.name}"
    try:
        client = docker_client(timeout=1)
    except BackendUnavailable as exc:
        from .dockerctx import current_context

        try:
            context = current_context()
        except BackendUnavailable:
            return "embedded", f"auto: {exc}"
        where = f" at the {context.describe()}" if context else ""
        return "embedded", f"auto: no Docker engine answers{where}"
    docker = DockerEmulator(profile, image=settings.image, project=settings.project)
    docker.use_client(client)
    try:
        if docker.container_exists():
            return "docker", f"auto: container {docker.container_name} exists"
        if docker.has_image():
            return "docker", f"auto: Docker answers and has {docker.image}"
        return "embedded", (f"auto: Docker answers but has no {docker.image} image "
                            "(--backend docker pulls it)")
    finally:
        docker.close()


def start_if_stopped(target: Target, emulator_for: Callable[[str], Emulator], echo: Echo) -> bool:
    """What every task that touches a database does first: a target that is a *profile* whose
    port nothing answers on gets its emulator started, said in one line; a DSN never does.
    True when it started one."""
    profile = target.profile
    if profile is None or target.source != "profile" or port_answers(profile.host, profile.port):
        return False
    emulator = emulator_for(profile.name)
    try:
        emulator.up(echo=echo)
    except EmulatorError as exc:
        raise EmulatorError(
            f"{target.describe()} is not answering and its emulator could not start: {exc}"
        ) from None
    echo(f"emulator: the {profile.name} emulator was not running; started it ({emulator.backend})")
    return True


def _embedded(profile: Profile, settings: EmulatorSettings) -> EmbeddedEmulator:
    return EmbeddedEmulator(
        profile,
        base_dir=settings.base_dir,
        bin_dir=resolve_bin_dir(settings.bin_dir),
        system_user=settings.system_user,
        settings=settings.server_settings,
    )
