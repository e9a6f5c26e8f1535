"""Connections to Docker daemons other than the host's default one (a swarm manager, a cluster
node), and the one way their SDK errors leave this package: as `EngineError` naming what was
being done."""

from __future__ import annotations

import contextlib
import functools

from lab.engine.connection import short
from lab.errors import EngineError, EngineUnavailable


def connect(url: str | None = None, timeout: float = 120):
    """A pinged docker SDK client for `url` (`tcp://host:2375`, `unix://...`), or for the
    environment's engine (`DOCKER_HOST`) when None."""
    import docker

    url = url or _context_host()
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout) if url else docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"cannot reach the Docker engine at {url or 'DOCKER_HOST'}: {short(exc)}") from None
    return client


def _context_host() -> str | None:
    """The current Docker context's endpoint when it is not the default one (the SDK's
    `from_env` reads only DOCKER_HOST); None to let `from_env` decide."""
    import os

    if os.environ.get("DOCKER_HOST"):
        return None
    try:
        from docker.context import ContextAPI

        context = ContextAPI.get_current_context()
    except Exception:  # noqa: BLE001 - an unreadable context config: fall back to the environment
        return None
    if context is None or context.name == "default":
        return None
    return context.Host


@contextlib.contextmanager
def docker_errors(what: str):
    """SDK and HTTP errors inside become one EngineError: `docker: WHAT: first line`."""
    import docker
    import requests

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineError(f"docker: {what}: {short(exc)}") from None


def sdk_errors(method):
    """`docker_errors` around a whole method, named after it."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with docker_errors(method.__name__.strip("_").replace("_", " ")):
            return method(*args, **kwargs)
    return wrapper
