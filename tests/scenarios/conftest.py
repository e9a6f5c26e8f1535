from tests.docker.conftest import engine, impairment_probe, node_image  # noqa: F401 - the same session fixtures
