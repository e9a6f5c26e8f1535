from tests.docker.conftest import engine, node_image  # noqa: F401 - the same session fixtures
