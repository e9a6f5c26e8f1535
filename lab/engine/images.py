"""Images through the docker SDK (look up, pull, tag, import, prune) and the node image's build
through compose, which reads the build section of the committed compose file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.engine.compose_cli import COMPOSE_COMMAND, ComposeProject
from lab.engine.connection import DockerConnection, docker_module, sdk_call
from lab.errors import EngineError

BUILD_TIMEOUT = 1800  # a cold build on a slow mirror


class Images(DockerConnection):
    """The image side of `Engine`."""

    compose_command: tuple[str, ...] = COMPOSE_COMMAND

    @sdk_call
    def image_id(self, ref: str) -> str | None:
        docker = docker_module()
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            return None

    @sdk_call
    def image_labels(self, ref: str) -> dict[str, str] | None:
        docker = docker_module()
        try:
            return dict(self.client.images.get(ref).labels or {})
        except docker.errors.ImageNotFound:
            return None

    def pull(self, ref: str) -> bool:
        """Try to pull an image; False (not an error) when no registry answers."""
        docker = docker_module()
        repository, tag = _split_ref(ref)
        try:
            self.client.images.pull(repository, tag=tag)
            return True
        except docker.errors.DockerException:
            return False

    @sdk_call
    def tag(self, source: str, target: str) -> None:
        repository, tag = _split_ref(target)
        self.client.images.get(source).tag(repository, tag)

    @sdk_call
    def import_image(self, tarball: Path, ref: str, changes: list[str]) -> str:
        """`docker import` a root filesystem tarball as an image (the offline base)."""
        repository, tag = _split_ref(ref)
        # From a file, so the upload has a length; a chunked stream of this size is refused.
        self.client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
        image_id = self.image_id(ref)
        if image_id is None:
            raise EngineError(f"docker import of {tarball} did not produce {ref}")
        return image_id

    def build_image(self, file: Path, service: str, env: dict[str, str],
                    on_line: Callable[[str], None] | None = None) -> None:
        """`docker compose build SERVICE` (BuildKit's cache makes a rebuild a second or two)."""
        ComposeProject(None, file, self.compose_command).run(
            "build", service, on_line=on_line, capture=on_line is None, timeout=BUILD_TIMEOUT, env=env)

    def prune_untagged(self, label: str) -> int:
        """Remove untagged images with this label (what rebuilds leave); returns how many.
        Housekeeping only: a prune that fails or times out never fails the build that asked."""
        import requests

        docker = docker_module()
        try:
            result = self.client.images.prune(filters={"dangling": True, "label": label})
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return 0  # another prune is running, or a busy daemon did not answer: the next build tidies up
        return len(result.get("ImagesDeleted") or [])


def _split_ref(ref: str) -> tuple[str, str]:
    """`registry:5000/name:tag` -> (`registry:5000/name`, `tag`); the tag defaults to latest."""
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(ref)
    return repository, tag or "latest"
