"""The docker backend against a real Docker Engine (CI starts one and builds the image)."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ROOT, SENTINEL_PASSWORD, Cli, assert_no_secret, free_port, login, require_docker

from movelib.base.defaults import DEFAULT_PROFILES

pytestmark = pytest.mark.slow  # containers: CI runs them

IMAGE = os.environ.get("MOVELIB_TEST_DOCKER_IMAGE", "movelib/postgres:15-local")
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.fixture
def docker_engine() -> Iterator[Any]:
    client = require_docker(IMAGE)
    yield client
    client.close()


@pytest.fixture
def project(cli: Cli, docker_engine: Any) -> Iterator[str]:
    """A throw-away container project; everything labelled with it is removed afterwards."""
    name = f"movelib-test-{uuid.uuid4().hex[:8]}"
    yield name
    label = f"io.movelib.project={name}"
    for container in docker_engine.containers.list(all=True, filters={"label": label}):
        container.remove(force=True, v=True)
    for volume in docker_engine.volumes.list(filters={"label": label}):
        volume.remove(force=True)


def dockered(project: str, **extra: str) -> dict[str, str]:
    return {"INVOKE_EMULATOR_BACKEND": "docker", "INVOKE_EMULATOR_PROJECT": project,
            "INVOKE_EMULATOR_IMAGE": IMAGE, **extra}




def test_staging_container_seeds_verifies_survives_and_purges(cli: Cli, docker_engine: Any, project: str) -> None:
    port = free_port()
    env = {**dockered(project), "INVOKE_PROFILES_STAGING_PORT": str(port),
           "INVOKE_EMULATOR_BACKEND": "embedded"}  # the option below must win over config
    up = cli("db.up", "--backend", "docker", "--profile", "staging", "--image", IMAGE, env=env)
    assert up.code == 0, up.output
    assert "staging emulator started (docker, PostgreSQL 15" in up.stdout
    assert login(port, "athlete_staging", "athlete_planning_staging").startswith("15.")
    container = docker_engine.containers.get(f"{project}-staging")
    assert container.labels == {"io.movelib.project": project, "io.movelib.profile": "staging"}
    assert container.attrs["HostConfig"]["PortBindings"]["5432/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

    env["INVOKE_EMULATOR_BACKEND"] = "docker"
    seeded = cli("seed", "--profile", "staging", env=env)
    assert seeded.code == 0, seeded.output
    assert "seed: 8 published (0 new versions), 0 unchanged" in seeded.stdout
    assert cli("verify", "--profile", "staging", env=env).code == 0

    status = cli("db.status", env=env)
    assert re.search(rf"staging +docker +{port} +yes +15\.", status.stdout), status.stdout

    assert cli("db.down", "--profile", "staging", env=env).code == 0
    assert not docker_engine.containers.list(all=True, filters={"name": f"{project}-staging"})
    assert cli("db.up", "--profile", "staging", env=env).code == 0
    again = cli("verify", "--profile", "staging", "--file", str(ROOT / "data" / "movements-canonical.json"), env=env)
    assert again.code == 0 and "verify: ok (library 8, current 8" in again.stdout
    assert "ready to accept connections" in cli("db.logs", "--profile", "staging", env=env).stdout

    purged = cli("db.down", "--profile", "staging", "--purge", env=env)
    assert purged.code == 0 and "data deleted" in purged.stdout
    label = {"label": f"io.movelib.project={project}"}
    assert docker_engine.containers.list(all=True, filters=label) == []
    assert docker_engine.volumes.list(filters=label) == []


def test_auto_picks_docker_when_an_engine_answers(cli: Cli, docker_engine: Any, project: str) -> None:
    env = {**dockered(project), "INVOKE_EMULATOR_BACKEND": "auto"}
    up = cli("db.up", env=env)
    assert up.code == 0, up.output
    assert "(docker, PostgreSQL 15" in up.stdout
    down = cli("db.down", "--purge", env=env)
    assert down.code == 0 and "local emulator stopped (docker); data deleted" in down.stdout


def test_auto_picks_embedded_when_no_engine_answers(cli: Cli) -> None:
    env = {**NO_ENGINE, "INVOKE_EMULATOR_BACKEND": "auto"}
    try:
        up = cli("db.up", env=env)
        assert up.code == 0, up.output
        assert "(embedded, PostgreSQL 18" in up.stdout
    finally:
        cli("db.down", "--purge", env=env)


def test_docker_backend_without_an_engine_says_what_to_do(cli: Cli) -> None:
    result = cli("db.up", "--backend", "docker", env=NO_ENGINE)
    assert result.code == 2
    assert "no Docker engine answers" in result.stderr
    assert "--backend embedded" in result.stderr and "dockerd" in result.stderr
    assert "Traceback" not in result.output


def test_an_absent_unpullable_image_is_named(cli: Cli, docker_engine: Any, project: str) -> None:
    image = "movelib/no-such-image:0"
    result = cli("db.up", "--image", image, env=dockered(project))
    assert result.code == 2
    assert f"the image {image} is not on this machine and could not be pulled" in result.stderr
    assert "compose/local-image/build.sh" in result.stderr and "--image" in result.stderr
    assert "Traceback" not in result.output


def test_a_port_held_by_another_container_is_named(cli: Cli, docker_engine: Any, project: str) -> None:
    port = str(free_port())
    env = {**dockered(project), "INVOKE_PROFILES_LOCAL_PORT": port, "INVOKE_PROFILES_STAGING_PORT": port,
           "INVOKE_PROFILES_STAGING_PASSWORD": SENTINEL_PASSWORD}
    assert cli("db.up", env=env).code == 0
    result = cli("db.up", "--profile", "staging", env=env)
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is already in use by the Docker container {project}-local" in result.stderr
    assert "Traceback" not in result.output
    assert_no_secret(result.output)


def test_a_port_held_by_a_process_is_named(cli: Cli, docker_engine: Any, project: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = cli("db.up", env={**dockered(project), "INVOKE_PROFILES_LOCAL_PORT": str(port)})
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is already in use by python" in result.stderr


def test_a_container_that_never_accepts_a_login_shows_its_log(cli: Cli, docker_engine: Any, project: str) -> None:
    """An image without POSTGRES_PASSWORD support fails; the error carries the last log lines."""
    env = {**dockered(project), "INVOKE_PROFILES_LOCAL_PASSWORD": ""}
    result = cli("db.up", env=env)
    assert result.code == 2
    assert "did not accept a login" in result.stderr
    assert "POSTGRES_PASSWORD is not set" in result.stderr


def test_compose_file_agrees_with_the_profiles() -> None:
    compose = yaml.safe_load(Path(ROOT / "compose" / "preview.yml").read_text())
    services = compose["services"]
    for service, profile in (("postgres", "local"), ("postgres-staging", "staging")):
        spec, expected = services[service], DEFAULT_PROFILES[profile]
        env = spec["environment"]
        assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
            expected["user"], expected["password"], expected["database"])
        assert spec["ports"] == [f"127.0.0.1:{expected['port']}:5432"]
        assert "pg_isready" in " ".join(spec["healthcheck"]["test"])
        assert spec["volumes"][0].endswith(":/var/lib/postgresql")
    assert services["postgres-staging"]["profiles"] == ["staging"]
    assert "profiles" not in services["postgres"]


def test_db_up_records_its_backend_and_every_db_task_follows_it(cli: Cli, docker_engine: Any, project: str,
                                                                tmp_path: Path) -> None:
    """As reported: `db.up --backend docker --image X` over an older embedded data folder; then
    auto (db.status, db.down, a seed that starts the emulator) used the embedded one."""
    port = free_port()
    env = {"INVOKE_EMULATOR_PROJECT": project, "INVOKE_EMULATOR_BACKEND": "auto",
           "INVOKE_PROFILES_STAGING_PORT": str(port)}
    try:
        assert cli("db.up", "--profile", "staging", "--backend", "embedded", env=env).code == 0
        assert cli("db.down", "--profile", "staging", env=env).code == 0  # embedded data stays
        up = cli("db.up", "--profile", "staging", "--backend", "docker", "--image", IMAGE, env=env)
        assert up.code == 0, up.output
        status = cli("db.status", env=env)
        line = next(x for x in status.stdout.splitlines() if x.lstrip().startswith("staging"))
        assert "docker" in line and "yes" in line, status.stdout
        assert "db.up started it on docker" in status.stdout
        assert "embedded data too" in status.stdout
        seeded = cli("seed", "--profile", "staging", env=env)
        assert seeded.code == 0 and "started it" not in seeded.stdout, seeded.output
        down = cli("db.down", "--profile", "staging", env=env)
        assert down.code == 0 and "staging emulator stopped (docker)" in down.stdout, down.output
        assert docker_engine.containers.list(filters={"name": f"{project}-staging"}) == []
    finally:
        cli("db.down", "--profile", "staging", "--purge", "--backend", "embedded", env=env)
