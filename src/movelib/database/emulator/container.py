"""The docker emulator: one PostgreSQL container per profile, driven through docker-py.

Container ``movelib-<profile>``, volume ``movelib-<profile>-data``, both labelled with the
project and the profile; the port is published on 127.0.0.1 only. The image is configurable
(default: the official ``postgres`` image of the embedded server's major) and is expected to
honour POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and PGDATA as the official image does.
"""

from __future__ import annotations

import contextlib
import gc
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg

from ...base.defaults import DOCKER_IMAGE, DOCKER_PROJECT
from ...base.errors import BackendUnavailable, EmulatorError
from ..profiles import Profile
from .base import (
    EmulatorStatus,
    masked_profile_dsn,
    port_holder,
    port_in_use,
    port_is_free,
    query_server_version,
)
from .embedded import Echo

PROJECT_LABEL = "io.movelib.project"
PROFILE_LABEL = "io.movelib.profile"
DATA_MOUNT = "/var/lib/postgresql"
PGDATA = "/var/lib/postgresql/data"
PING_TIMEOUT = 3

NO_ENGINE = (
    "no Docker engine answers ({reason}). Start one (Docker Desktop, `sudo systemctl start "
    "docker`, or `dockerd`), point DOCKER_HOST at it, or use --backend embedded, which needs "
    "no Docker at all"
)


def docker_client(timeout: float = PING_TIMEOUT) -> Any:
    """A docker-py client whose engine answered a ping, or :class:`BackendUnavailable`."""
    try:
        import docker
    except ImportError:
        raise BackendUnavailable(NO_ENGINE.format(
            reason="the docker Python package is missing: pip install docker")) from None
    from .dockerctx import current_context

    context = current_context()  # BackendUnavailable when the named context is unreadable
    client = None
    reason = ""
    # docker-py leaves the socket of a failed probe open: it is closed when the exception's
    # traceback is freed (at the end of the except block, or by the collector for a cycle),
    # which must happen here, where its ResourceWarning is ignored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            if context is None:
                client = docker.from_env(timeout=int(max(timeout, 1)))
            else:
                client = docker.DockerClient(base_url=context.host, timeout=int(max(timeout, 1)))
            client.ping()
        except Exception as exc:  # docker-py raises many kinds; all mean "no engine"
            reason = _first_line(exc) + (f"; {context.describe()}" if context else "")
            if client is not None:
                client.close()
        if reason:
            gc.collect()
    if reason:
        raise BackendUnavailable(NO_ENGINE.format(reason=reason))
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class DockerEmulator:
    backend = "docker"
    reason = ""  # why this backend; set by get_emulator
    record_dir: Path | None = None  # where emulator.record keeps the profile's backend

    def __init__(self, profile: Profile, *, image: str = DOCKER_IMAGE, project: str = DOCKER_PROJECT,
                 start_timeout: float = 90) -> None:
        self.profile = profile
        self.image = image or DOCKER_IMAGE
        self.project = project or DOCKER_PROJECT
        self.start_timeout = start_timeout
        self.container_name = f"{self.project}-{profile.name}"
        self.volume_name = f"{self.project}-{profile.name}-data"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def use_client(self, client: Any) -> None:
        """Talk through ``client`` (an engine that already answered)."""
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def container_exists(self) -> bool:
        return self._container() is not None

    def holds_data(self) -> bool:
        """A container or a data volume exists for the profile."""
        import docker.errors

        if self.container_exists():
            return True
        try:
            self.client.volumes.get(self.volume_name)
        except docker.errors.NotFound:
            return False
        return True

    def _container(self) -> Any:
        import docker.errors

        try:
            return self.client.containers.get(self.container_name)
        except docker.errors.NotFound:
            return None

    # -- inspection -------------------------------------------------------------------------

    def status(self) -> EmulatorStatus:
        container = self._container()
        running = container is not None and container.status == "running"
        version, detail = ("", "")
        if running:
            version, detail = query_server_version(self.profile)
        else:
            detail = f"container {container.status}" if container is not None else "no container"
            if not port_is_free("127.0.0.1", self.profile.port):
                detail += f"; port {self.profile.port} is taken by {self._port_user(self.profile.port)}"
        return EmulatorStatus(
            profile=self.profile.name, backend=self.backend, port=self.profile.port,
            running=running, server_version=version or "-",
            dsn=masked_profile_dsn(self.profile), detail=detail or self.container_name,
            reason=self.reason,
        )

    def logs(self, lines: int = 50) -> str:
        container = self._container()
        if container is None:
            return ""
        return str(container.logs(tail=lines).decode("utf-8", errors="replace")).rstrip()

    # -- lifecycle --------------------------------------------------------------------------

    def up(self, echo: Echo = lambda _line: None) -> bool:
        container = self._container()
        if container is not None and container.status == "running":
            return False
        if not port_is_free("127.0.0.1", self.profile.port):
            raise port_in_use(self.profile, self._port_user(self.profile.port))
        if container is not None:
            echo(f"starting the existing container {self.container_name}")
            container.start()
        else:
            self._ensure_image(echo)
            container = self._create(echo)
        self._wait_until_ready(container)
        return True

    def down(self, purge: bool = False) -> bool:
        import docker.errors

        container = self._container()
        was_running = container is not None and container.status == "running"
        if container is not None:
            if was_running:
                container.stop(timeout=30)
            container.remove(v=True)  # and any anonymous volume the image declared
        if purge:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(self.volume_name).remove()
        return was_running

    # -- steps ------------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        return {PROJECT_LABEL: self.project, PROFILE_LABEL: self.profile.name}

    def _port_user(self, port: int) -> str:
        for other in self.client.containers.list():
            for bindings in (other.attrs.get("HostConfig", {}).get("PortBindings") or {}).values():
                if any(str(b.get("HostPort")) == str(port) for b in bindings or []):
                    return f"the Docker container {other.name}"
        return port_holder(port)

    def has_image(self) -> bool:
        import docker.errors

        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _ensure_image(self, echo: Echo) -> None:
        import docker.errors

        try:
            self.client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        echo(f"pulling {self.image}")
        try:
            self.client.images.pull(self.image)
        except docker.errors.APIError as exc:
            raise EmulatorError(
                f"the image {self.image} is not on this machine and could not be pulled "
                f"({_first_line(exc)}). Pull or load it (`docker pull {self.image}`, `docker load`), "
                "build one without a registry (compose/local-image/build.sh), or pass --image NAME"
            ) from None

    def _create(self, echo: Echo) -> Any:
        import docker.errors

        try:
            self.client.volumes.get(self.volume_name)
        except docker.errors.NotFound:
            self.client.volumes.create(self.volume_name, labels=self._labels())
        echo(f"creating container {self.container_name} from {self.image}")
        try:
            return self.client.containers.run(
                self.image,
                name=self.container_name,
                detach=True,
                labels=self._labels(),
                environment={
                    "POSTGRES_USER": self.profile.user,
                    "POSTGRES_PASSWORD": self.profile.password,
                    "POSTGRES_DB": self.profile.database,
                    "PGDATA": PGDATA,
                },
                ports={"5432/tcp": ("127.0.0.1", self.profile.port)},
                volumes={self.volume_name: {"bind": DATA_MOUNT, "mode": "rw"}},
                stop_signal="SIGINT",  # PostgreSQL's fast shutdown, as the official image sets
            )
        except docker.errors.APIError as exc:
            raise EmulatorError(
                f"docker could not start {self.container_name}: {_first_line(exc)}"
            ) from None

    def _wait_until_ready(self, container: Any) -> None:
        deadline = time.monotonic() + self.start_timeout
        problem = ""
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                break
            try:
                with psycopg.connect(self.profile.url(), connect_timeout=2):
                    return
            except psycopg.Error as exc:
                problem = _first_line(exc)
            time.sleep(0.5)
        from ...base import secrets

        tail = secrets.redact(self.logs(20))
        state = container.status
        raise EmulatorError(
            f"the {self.profile.name} container ({self.container_name}, {state}) did not accept "
            f"a login within {self.start_timeout:g} s ({secrets.redact(problem) or 'no answer'}). "
            f"Last log lines:\n{tail}"
        )
