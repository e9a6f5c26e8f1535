"""Finding the host's Debian mirror for the offline base (no Docker)."""

from lab.images import host_debian_mirror


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
