"""The lab's images: a Python/Debian base (public where a registry answers, else built offline)
and the node image with the echo programs on top of it.

Choice of base, in order: `$LAB_BASE_IMAGE` if set; `socketlab/base:bookworm` if already
present; the public `python:3.11-slim-bookworm`, pulled and tagged as our base; else a base
made here from Debian packages with mmdebstrap and `docker import` (no registry needed).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from lab.compose import node_image
from lab.engine import Engine
from lab.engine.swarm.cluster import cluster_image
from lab.errors import EngineError, LabError

BASE_IMAGE = "socketlab/base:bookworm"
NODE_LABEL = "io.socketlab.image=node"  # set in images/node/Dockerfile
CONTEXT_LABEL = "io.socketlab.context"  # ditto: what the image was built from (`context_digest`)
PUBLIC_BASE = "python:3.11-slim-bookworm"
BASE_PACKAGES = ["python3", "iproute2", "iptables", "tcpdump", "procps", "passwd", "ca-certificates"]
BASE_CHANGES = [
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["python3"]',
    "LABEL io.socketlab.base=mmdebstrap",
]

BuildOutput = Callable[[str], None]  # where build steps print their lines


def base_image_ref() -> str:
    return os.environ.get("LAB_BASE_IMAGE") or BASE_IMAGE


def ensure_base(engine: Engine, progress: BuildOutput = print) -> str:
    """Make sure a base image exists; return its reference."""
    ref = base_image_ref()
    if engine.image_id(ref):
        return ref
    if ref != BASE_IMAGE:
        progress(f"pulling {ref} (LAB_BASE_IMAGE)")
        if engine.pull(ref):
            return ref
        raise LabError(f"LAB_BASE_IMAGE={ref} is not present and cannot be pulled; unset it to build a base offline")
    progress(f"trying the public base {PUBLIC_BASE}")
    if engine.pull(PUBLIC_BASE):
        engine.tag(PUBLIC_BASE, BASE_IMAGE)
        progress(f"using {PUBLIC_BASE} as {BASE_IMAGE}")
        return BASE_IMAGE
    progress("no registry reachable: building the base from Debian packages (mmdebstrap, ~20 s)")
    build_offline_base(engine, BASE_IMAGE, progress)
    return BASE_IMAGE


def host_debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str | None:
    """The Debian mirror this host's apt already uses (a proxy or a local mirror is kept),
    or None when the host has none (mmdebstrap then uses its default)."""
    candidates: list[str] = []
    for sources in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for line in sources.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
    legacy = apt_dir / "sources.list"
    if legacy.is_file():
        for line in legacy.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line).split()  # drop `[arch=... signed-by=...]`
            if len(words) >= 2 and words[0] == "deb":
                candidates.append(words[1])
    for uri in candidates:
        if "://" in uri and uri.rstrip("/").endswith("/debian"):
            return uri
    return None


SCRATCH_NEEDS = 2 * 2**30  # an unpacked node (~400 MB) and its tarball, twice over


def scratch_directory(candidates: tuple[str, ...] = ("/dev/shm",)) -> str | None:
    """A memory-backed directory with room for a root filesystem and its tarball, or None (the
    default temporary directory then)."""
    for path in candidates:
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        if usage.free >= SCRATCH_NEEDS and os.access(path, os.W_OK):
            return path
    return None


def build_offline_base(engine: Engine, ref: str, progress: BuildOutput = print, suite: str = "bookworm", *,
                       packages: list[str] = BASE_PACKAGES, changes: list[str] = BASE_CHANGES,
                       hooks: list[str] = (), variant: str = "apt") -> str:
    """mmdebstrap a minimal Debian with Python and the network tools (or `packages`), then
    `docker import` it with `changes`; `hooks` are extra mmdebstrap options (files copied in).

    Packages come through the host's own Debian mirror, so no mirror is named here.
    """
    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise LabError("mmdebstrap is not installed: `sudo apt-get install -y mmdebstrap` (or run scripts/setup.sh)")
    scratch = scratch_directory()
    with tempfile.TemporaryDirectory(prefix="lab-base-", dir=scratch, ignore_cleanup_errors=True) as tmp:
        tarball = Path(tmp) / "base.tar"
        mirror = host_debian_mirror()
        cmd = [tool, f"--variant={variant}", "--include=" + ",".join(packages), "--quiet", *hooks, suite, str(tarball)]
        if mirror:
            cmd.append(mirror)
        # mmdebstrap unpacks the root filesystem under $TMPDIR: in memory it takes two thirds of
        # the time it takes on this disk.
        cmd = ["env", f"TMPDIR={scratch or tempfile.gettempdir()}", *cmd]
        if os.geteuid() != 0 and shutil.which("sudo"):
            cmd = ["sudo", *cmd]  # a root filesystem with the right owners needs root
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise EngineError(f"`{' '.join(cmd)}` failed with exit status {proc.returncode}:\n{tail}")
        progress(f"importing {tarball.stat().st_size // 2**20} MiB root filesystem as {ref}")
        return engine.import_image(tarball, ref, list(changes))


def context_digest(root: Path, base_id: str) -> str:
    """What the node image is built from, as one digest: the base image's id, the Dockerfile and
    every file of the lab package (more than the build context copies: a change to the
    orchestrator costs a cached build, never a stale image)."""
    digest = hashlib.sha256(base_id.encode())
    files = [root / "images" / "node" / "Dockerfile", root / ".dockerignore",
             *sorted(p for p in (root / "lab").rglob("*") if p.is_file() and "__pycache__" not in p.parts)]
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"-")
        digest.update(b"\0")
    return digest.hexdigest()


def build_node(engine: Engine, root: Path, progress: BuildOutput | None = print) -> str:
    """Build (or refresh from cache) the node image through compose; return its image id.

    An image whose label says it was built from this very context is current: no build at all
    (a cached `docker compose build` still takes half a second, on every `lab run`)."""
    base = ensure_base(engine, progress or (lambda _m: None))
    digest = context_digest(root, engine.image_id(base) or base)
    if (engine.image_labels(node_image()) or {}).get(CONTEXT_LABEL) == digest:
        image_id = engine.image_id(node_image())
        if image_id is not None:
            return image_id
    engine.build_image(root / "compose.yaml", "server", env={"LAB_BASE_IMAGE": base, "LAB_CONTEXT_DIGEST": digest},
                       on_line=(lambda line: progress(f"  {line}")) if progress else None)
    image_id = engine.image_id(node_image())
    if image_id is None:
        raise EngineError(f"the build finished but {node_image()} is missing")
    engine.prune_untagged(NODE_LABEL)
    return image_id


# ---- the cluster node image of `lab cluster` (lab/engine/swarm/cluster.py)

# What a node needs: the Docker daemon, fuse-overlayfs for hosts whose own engine uses it, and
# the tools dockerd runs (iptables for its networks, ip for the overlay's VXLAN devices).
CLUSTER_PACKAGES = ["docker.io", "fuse-overlayfs", "iproute2", "iptables", "ca-certificates", "procps"]
CLUSTER_ENTRYPOINT = "/usr/local/bin/lab-cluster-node"
CLUSTER_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    f'ENTRYPOINT ["{CLUSTER_ENTRYPOINT}"]',
    "LABEL io.socketlab.image=cluster-node",
]


def build_cluster_image(engine: Engine, root: Path, progress: BuildOutput = print) -> str:
    """The cluster node image from Debian packages (mmdebstrap + `docker import`, about half a minute),
    with the entrypoint that starts the node's daemon copied in."""
    entrypoint = root / "images" / "cluster-node" / "entrypoint.sh"
    progress(f"building {cluster_image()} from Debian packages (mmdebstrap, about half a minute)")
    # Documentation, manuals and translations are a tenth of the node and nothing it needs.
    hooks = [*(f"--dpkgopt=path-exclude=/usr/share/{part}/*" for part in ("doc", "man", "locale", "info")),
             f"--customize-hook=copy-in {entrypoint} /usr/local/bin",
             f'--customize-hook=mv "$1/usr/local/bin/entrypoint.sh" "$1{CLUSTER_ENTRYPOINT}"',
             f'--customize-hook=chmod 755 "$1{CLUSTER_ENTRYPOINT}"']
    # `essential`: a node needs no apt of its own (its packages are installed here, once).
    return build_offline_base(engine, cluster_image(), progress, packages=CLUSTER_PACKAGES, changes=CLUSTER_CHANGES,
                              hooks=hooks, variant="essential")
