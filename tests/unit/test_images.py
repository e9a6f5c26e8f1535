"""Finding the host's Debian mirror for the offline base, and when the node image needs a
build (no Docker: a fake engine)."""

from fake_engine import FakeEngine

from lab.images import BASE_IMAGE, build_node, host_debian_mirror


def test_mirror_from_deb822_sources_skips_security_and_other_repositories(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a-node.sources").write_text("Types: deb\nURIs: https://deb.example.org/node_20.x\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.internal:3142/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.internal:3142/debian-security\nSuites: bookworm-security\n"
    )
    assert host_debian_mirror(tmp_path) == "http://mirror.internal:3142/debian"


def test_mirror_from_one_line_sources_list(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://local/debian/ bookworm main\n"
    )
    assert host_debian_mirror(tmp_path) == "http://local/debian/"


def test_no_debian_mirror_leaves_the_choice_to_mmdebstrap(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://archive.ubuntu.com/ubuntu jammy main\n")
    assert host_debian_mirror(tmp_path) is None


def checkout(root):
    (root / "images" / "node").mkdir(parents=True)
    (root / "images" / "node" / "Dockerfile").write_text("FROM base\n")
    (root / ".dockerignore").write_text("*\n")
    (root / "lab" / "echo").mkdir(parents=True)
    (root / "lab" / "echo" / "client.py").write_text("print('v1')\n")
    return root


def test_the_node_image_is_built_only_when_what_it_is_built_from_changed(tmp_path):
    root = checkout(tmp_path)
    engine = FakeEngine(images={BASE_IMAGE: "sha256:base"})
    first = build_node(engine, root, progress=None)
    assert len(engine.builds) == 1 and engine.builds[0]["LAB_CONTEXT_DIGEST"]
    assert build_node(engine, root, progress=None) == first and len(engine.builds) == 1  # current: no build
    (root / "lab" / "echo" / "client.py").write_text("print('v2')\n")
    build_node(engine, root, progress=None)
    assert len(engine.builds) == 2 and engine.builds[1]["LAB_CONTEXT_DIGEST"] != engine.builds[0]["LAB_CONTEXT_DIGEST"]
    engine.images[BASE_IMAGE] = "sha256:newbase"  # a new base: the same files make another image
    build_node(engine, root, progress=None)
    assert len(engine.builds) == 3


def test_an_image_built_by_plain_compose_is_built_again_by_the_lab(tmp_path):
    root = checkout(tmp_path)
    engine = FakeEngine(images={BASE_IMAGE: "sha256:base", "socketlab/node:latest": "sha256:compose"},
                        labels={"socketlab/node:latest": {"io.socketlab.context": ""}})
    build_node(engine, root, progress=None)
    assert len(engine.builds) == 1
