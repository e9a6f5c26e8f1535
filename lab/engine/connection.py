"""The connection to the Docker engine through the docker SDK, shared by the engine's parts.

The SDK is imported on first use, so commands that never touch Docker (`lab list`, `--help`)
do not pay for it. Its errors leave the engine as `EngineError` naming what was being done.
"""

from __future__ import annotations

import functools

from lab.errors import EngineError, EngineUnavailable


def docker_module():
    """The docker SDK, or EngineUnavailable when it is missing."""
    try:
        import docker
        import docker.errors
    except ImportError as exc:  # pragma: no cover - the package depends on it
        raise EngineUnavailable(f"the docker SDK for Python is not installed ({exc})") from None
    return docker


def sdk_call(method):
    """Docker SDK and HTTP errors leave the engine as EngineError, naming what was being done."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        import requests

        docker = docker_module()
        try:
            return method(self, *args, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            what = method.__name__.replace("_", " ")
            raise EngineError(f"docker: {what}: {short(exc)}") from None
    return wrapper


class DockerConnection:
    """A lazily opened, pinged docker SDK client."""

    _client = None

    @property
    def client(self):
        if self._client is None:
            docker = docker_module()
            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(f"cannot reach the Docker engine: {short(exc)}") from None
            self._client = client
        return self._client


def short(exc: Exception) -> str:
    """The first line of an error, or its type when it says nothing."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
