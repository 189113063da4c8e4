"""Which Docker engine the ``docker`` command would talk to: its current context.

docker-py's ``from_env`` reads only ``DOCKER_HOST``; the docker CLI also follows the current
context (``docker context use``), which is how Colima, OrbStack, Rancher Desktop and Docker
Desktop without the default socket are reached. We read the context as the CLI does:
``DOCKER_HOST`` first; else ``DOCKER_CONTEXT``, else ``currentContext`` of
``$DOCKER_CONFIG/config.json`` (default ``~/.docker``); a context other than ``default`` names
its engine in ``contexts/meta/<sha256 of the name>/meta.json`` at ``Endpoints.docker.Host``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...base.errors import BackendUnavailable


@dataclass(frozen=True)
class DockerContext:
    name: str
    host: str  # e.g. unix:///Users/me/.colima/default/docker.sock, npipe:////./pipe/...
    source: str  # where the name came from: DOCKER_CONTEXT, or the config file

    def describe(self) -> str:
        return f"Docker context {self.name!r} ({self.source}) at {self.host}"


def current_context(environ: Mapping[str, str] = os.environ) -> DockerContext | None:
    """The context to use, or ``None`` for docker-py's own choice (``DOCKER_HOST``, or the
    platform's default socket or pipe). A context named but not readable is an error that
    names it, rather than a silent fall back to another engine."""
    if environ.get("DOCKER_HOST"):
        return None
    config_dir = Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = environ.get("DOCKER_CONTEXT", "")
    source = "DOCKER_CONTEXT"
    if not name:
        config = config_dir / "config.json"
        source = str(config)
        try:
            name = str(json.loads(config.read_bytes()).get("currentContext") or "")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as exc:
            raise BackendUnavailable(
                f"the Docker configuration {config} cannot be read ({exc}); fix it, or set "
                "DOCKER_HOST"
            ) from None
    if name in ("", "default"):
        return None
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    try:
        host = json.loads(meta.read_bytes())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailable(
            f"the current Docker context {name!r} (from {source}) cannot be read at {meta} "
            f"({type(exc).__name__}: {exc}); `docker context use default` or set DOCKER_HOST"
        ) from None
    if not isinstance(host, str) or not host:
        raise BackendUnavailable(f"the Docker context {name!r} names no engine in {meta}")
    return DockerContext(name, host, source)
