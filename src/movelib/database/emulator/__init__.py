"""Local PostgreSQL emulators, one per profile (``inv db.*``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ...base.defaults import DOCKER_PROJECT, SYSTEM_USER
from ...base.errors import ConfigError, EmulatorError
from ..profiles import Profile
from .base import EmulatorStatus, port_answers
from .embedded import Echo, EmbeddedEmulator
from .pgbin import resolve_bin_dir
from .record import AUTO_START, record, record_path, recorded

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
    "status_of",
    "stop",
]


class Emulator(Protocol):
    backend: str
    profile: Profile
    reason: str  # why this backend, for db.status
    record_dir: Path | None  # where .record keeps which backend serves the profile

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
    image = settings.image
    if backend == "auto":
        backend, reason = choose_backend(profile, settings)
        kept = recorded(settings.base_dir, profile.name)
        if kept is not None and kept.backend == backend and kept.image and not image:
            image = kept.image  # the image db.up used, unless one is given now
    emulator: Emulator
    if backend == "docker":
        from .container import DockerEmulator

        emulator = DockerEmulator(profile, image=image, project=settings.project)
        emulator.client  # noqa: B018 - fail now, with the message, if no engine answers
    else:
        emulator = _embedded(profile, settings)
    emulator.reason = reason
    emulator.record_dir = settings.base_dir
    return emulator


def stop(emulator: Emulator, settings: EmulatorSettings, *, auto: bool,
         purge: bool = False) -> tuple[Emulator, bool]:
    """``inv db.down``: stop ``emulator`` (``purge``: and delete its data). With ``auto`` (the
    backend was not chosen), a profile whose emulator on this backend was not running while
    the other backend's is: that one is stopped. The emulator stopped, and whether it ran; a
    purge forgets the backend recorded for the profile."""
    from .record import forget

    was_running = emulator.down(purge=purge)
    if not was_running and auto:
        other = other_backend(emulator, settings)  # data on both: stop what runs
        if other is not None and other.status().running:
            emulator, was_running = other, other.down(purge=purge)
    if purge:
        forget(settings.base_dir, emulator.profile.name, emulator.backend)
    return emulator, was_running


def status_of(emulator: Emulator, settings: EmulatorSettings) -> EmulatorStatus:
    """``inv db.status``'s line for ``emulator``; it names the other backend when that one
    holds data for the profile too (``db.down`` stops whichever of the two runs)."""
    found = emulator.status()
    other = other_backend(emulator, settings)
    if other is None:
        return found
    both = f"{other.backend} data too ({other.status().detail or 'stopped'})"
    return replace(found, detail="; ".join(n for n in (found.detail, both) if n))


def other_backend(emulator: Emulator, settings: EmulatorSettings) -> Emulator | None:
    """The profile's emulator on the backend ``emulator`` is not, when that one holds data for
    the profile (an embedded data folder, a docker container or volume); else None."""
    from ...base.errors import BackendUnavailable

    profile = emulator.profile
    if emulator.backend == "docker":
        if not (settings.base_dir / profile.name / "pgdata").exists():
            return None
        return get_emulator(profile, "embedded", settings)
    try:
        from .container import DockerEmulator, docker_client

        client = docker_client(timeout=1)
    except BackendUnavailable:
        return None
    docker = DockerEmulator(profile, image=settings.image, project=settings.project)
    docker.use_client(client)
    if not docker.holds_data():
        docker.close()
        return None
    docker.record_dir = settings.base_dir
    docker.reason = "auto: the other backend holding data"
    return docker


def choose_backend(profile: Profile, settings: EmulatorSettings) -> tuple[str, str]:
    """``auto``, one rule for starting, inspecting and stopping alike: the backend ``db.up`` last
    used for the profile (:mod:`.record`); else the backend that already holds the profile's
    data; else docker when an engine answers and has the image; else embedded. (``auto``
    never waits on a pull that may not work; ``--backend docker`` pulls.) Returns the backend
    and why, in a few words."""
    from ...base.errors import BackendUnavailable
    from .container import DockerEmulator, docker_client

    kept = recorded(settings.base_dir, profile.name)
    if kept is not None:
        return kept.backend, f"auto: {kept.describe(record_path(settings.base_dir, profile.name))}"
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


def would_start(target: Target) -> bool:
    """Whether :func:`start_if_stopped` would start an emulator for ``target``."""
    profile = target.profile
    return not (profile is None or target.source != "profile"
                or port_answers(profile.host, profile.port))


def start_if_stopped(target: Target, emulator_for: Callable[[str], Emulator], echo: Echo) -> bool:
    """What every task that touches a database does first: a target that is a *profile* whose
    port nothing answers on gets its emulator started, said in one line; a DSN never does.
    True when it started one."""
    profile = target.profile
    if profile is None or not would_start(target):
        return False
    emulator = emulator_for(profile.name)
    try:
        emulator.up(echo=echo)
    except EmulatorError as exc:
        raise EmulatorError(
            f"{target.describe()} is not answering and its emulator could not start: {exc}"
        ) from None
    remember(emulator, by=AUTO_START)
    echo(f"emulator: the {profile.name} emulator was not running; started it ({emulator.backend})")
    return True


def remember(emulator: Emulator, by: str = "db.up") -> None:
    """Record the backend (and image) that now serves the emulator's profile, and who started
    it (``db.up`` or :data:`~.record.AUTO_START`)."""
    from .container import DockerEmulator

    image = emulator.image if isinstance(emulator, DockerEmulator) else ""
    base = getattr(emulator, "record_dir", None)
    if base is not None:
        record(base, emulator.profile.name, emulator.backend, image, by)


def _embedded(profile: Profile, settings: EmulatorSettings) -> EmbeddedEmulator:
    return EmbeddedEmulator(
        profile,
        base_dir=settings.base_dir,
        bin_dir=resolve_bin_dir(settings.bin_dir),
        system_user=settings.system_user,
        settings=settings.server_settings,
    )
