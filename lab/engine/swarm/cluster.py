"""`lab cluster`: a real multi-node Docker Swarm on one machine, made of Docker-in-Docker nodes.

Each node is a container of the host's engine running its own Docker daemon (the cluster node
image, built offline from Debian packages). The nodes sit on an `internal: true` network of the
lab's own; node 1 initialises the swarm and the others join it as workers; the lab's node image is
loaded into every node with `docker save | docker load`, so no registry is involved. The lab
reaches every node's daemon at `tcp://NODE_IP:2375` on that network (the host owns the bridge).

Everything is labelled (`io.socketlab.cluster=NAME` and the test
session's label) and `down` removes it all: nodes, their volumes, the network. The swarm never
touches the host's engine: `docker swarm init` runs inside node 1.

Over 300 lines because up, down, status and load share one node model and its labels; split,
each half would re-derive them.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.engine.swarm.docker_api import connect, docker_errors, sdk_errors
from lab.errors import EngineError, EngineUnavailable, LabError, UsageError
from lab.labels import LABEL_PREFIX, SESSION_LABEL, session_labels

CLUSTER_LABEL = f"{LABEL_PREFIX}.cluster"
NODE_LABEL = f"{LABEL_PREFIX}.cluster-node"  # its number, 1..N
DEFAULT_NAME = "lab-cluster"
CLUSTER_IMAGE = "socketlab/cluster-node:bookworm"
DAEMON_PORT = 2375
SWARM_PORT = 2377
MAX_NODES = 9
CUT_CHAIN = "LAB-CUT"  # the chain of a node's firewall that cuts it off the others (`cut`)

Progress = Callable[[str], None]


def cluster_name() -> str:
    """The cluster this shell works with: `$LAB_CLUSTER`, else `lab-cluster`."""
    return os.environ.get("LAB_CLUSTER") or DEFAULT_NAME


def cluster_image() -> str:
    return os.environ.get("LAB_CLUSTER_IMAGE") or CLUSTER_IMAGE


@dataclass
class Node:
    """One node of the cluster, as the host's engine and the node's own daemon see it."""

    number: int
    container: str  # the host's container name
    hostname: str  # the swarm's node name: node1, node2, ...
    status: str  # the container's state on the host
    ip: str | None  # on the cluster's network
    swarm: str = "?"  # the inner daemon's swarm state: active, inactive, ... or unreachable
    role: str = ""  # manager or worker
    images: int | None = None

    @property
    def url(self) -> str:
        return f"tcp://{self.ip}:{DAEMON_PORT}"


class Cluster:
    """The DinD swarm named `name`, driven through the host's engine and each node's daemon."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or cluster_name()
        self._host = None

    # ---- the host's side --------------------------------------------------------------
    @property
    def host(self):
        if self._host is None:
            self._host = connect()
        return self._host

    def labels(self, **extra: str) -> dict[str, str]:
        return {CLUSTER_LABEL: self.name, **session_labels(), **extra}

    @sdk_errors
    def nodes(self) -> list[Node]:
        """The cluster's nodes in order, with what the host knows of them (no inner calls)."""
        found = []
        for row in self.host.api.containers(all=True, filters={"label": f"{CLUSTER_LABEL}={self.name}"}):
            labels = row.get("Labels") or {}
            networks = (row.get("NetworkSettings") or {}).get("Networks") or {}
            ip = (networks.get(self.name) or {}).get("IPAddress") or None
            number = int(labels.get(NODE_LABEL, "0") or 0)
            found.append(Node(number, row["Names"][0].lstrip("/"), f"node{number}", row.get("State", "?"), ip))
        return sorted(found, key=lambda n: n.number)

    def manager_url(self) -> str | None:
        """The first node's daemon, where swarm commands go; None when the cluster is not up."""
        nodes = [n for n in self.nodes() if n.status == "running" and n.ip]
        return nodes[0].url if nodes else None

    # ---- up ---------------------------------------------------------------------------
    def up(self, count: int = 3, node_image: str | None = None, progress: Progress = print,
           build: Callable[[], str] | None = None) -> list[Node]:
        """Start `count` nodes, form the swarm, load `node_image` into every node. On any failure
        (or Ctrl-C) whatever was started is removed again."""
        if not 1 <= count <= MAX_NODES:
            raise UsageError(f"--nodes must be 1 to {MAX_NODES}, got {count}")
        if self.nodes() or self._network() is not None:
            raise UsageError(f"cluster {self.name} is already up (`lab cluster status`; `lab cluster down` removes it)")
        started = time.monotonic()
        try:
            if self.image_id() is None:
                if build is None:
                    raise LabError(f"the cluster node image {cluster_image()} is missing: run `lab cluster build`")
                build()
            self._start_nodes(count, progress)
            nodes = self._wait_for_daemons(progress)
            self._form_swarm(nodes, progress)
            if node_image:
                self.load_image(node_image, progress)
        except BaseException:
            progress("cluster up failed: removing what was started")
            self.down(progress=lambda _m: None)
            raise
        progress(f"cluster {self.name} up: {count} nodes in {time.monotonic() - started:.1f} s")
        return self.status()

    @sdk_errors
    def _start_nodes(self, count: int, progress: Progress) -> None:
        progress(f"starting {count} nodes on the internal network {self.name}")
        self.host.networks.create(self.name, driver="bridge", internal=True, labels=self.labels())
        for number in range(1, count + 1):
            container = f"{self.name}-node{number}"
            labels = self.labels(**{NODE_LABEL: str(number)})
            self.host.volumes.create(container, labels=labels)
            api = self.host.api
            host_config = api.create_host_config(
                binds={container: {"bind": "/var/lib/docker", "mode": "rw"}},
                # Everything --privileged gives except CAP_SYS_RESOURCE, which some hosts' bounding
                # set lacks (there --privileged fails with "unable to apply caps").
                cap_add=["ALL"],
                cap_drop=["SYS_RESOURCE"],
                security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                devices=["/dev/fuse:/dev/fuse:rwm"],
                device_cgroup_rules=["c *:* rmw", "b *:* rmw"],
                tmpfs={"/run": "", "/tmp": ""},
                network_mode=self.name,
            )
            # `--security-opt systempaths=unconfined`, which the SDK does not know: nothing of
            # /proc and /sys masked or read-only (the inner daemon writes there).
            host_config.update(MaskedPaths=[], ReadonlyPaths=[])
            created = api.create_container(cluster_image(), name=container, hostname=f"node{number}",
                                           labels=labels, host_config=host_config)
            api.start(created["Id"])

    def _wait_for_daemons(self, progress: Progress, timeout: float = 90) -> list[Node]:
        """Each node's daemon answering on the cluster network (~8 s on a quiet 2-core host)."""
        progress("waiting for the nodes' Docker daemons")
        deadline = time.monotonic() + timeout
        pending = {n.number: n for n in self.nodes()}
        while pending:
            for number, node in list(pending.items()):
                if node.status != "running":
                    logs = self.host.containers.get(node.container).logs(tail=5).decode("utf-8", "replace")
                    raise EngineError(f"cluster node {node.container} stopped while starting:\n{logs.strip()}")
                try:
                    connect(node.url, timeout=5)
                    del pending[number]
                except EngineUnavailable:
                    pass
            if not pending:
                break
            if time.monotonic() > deadline:
                names = ", ".join(n.container for n in pending.values())
                raise EngineError(f"the Docker daemons of {names} did not answer within {timeout:g} s")
            time.sleep(0.5)
            current = {n.number: n for n in self.nodes()}
            pending = {k: current[k] for k in pending if k in current}
        return self.nodes()

    def _form_swarm(self, nodes: list[Node], progress: Progress) -> None:
        """`docker swarm init` inside node 1, every other node joins it as a worker."""
        progress(f"forming the swarm: {nodes[0].hostname} manager, {len(nodes) - 1} workers")
        manager = connect(nodes[0].url)
        with docker_errors("swarm init"):
            manager.swarm.init(advertise_addr=nodes[0].ip, listen_addr=f"0.0.0.0:{SWARM_PORT}")
            token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for node in nodes[1:]:
            with docker_errors(f"swarm join of {node.hostname}"):
                connect(node.url).swarm.join(remote_addrs=[f"{nodes[0].ip}:{SWARM_PORT}"], join_token=token,
                                             advertise_addr=node.ip, listen_addr=f"0.0.0.0:{SWARM_PORT}")
        deadline = time.monotonic() + 60
        while True:
            with docker_errors("listing swarm nodes"):
                ready = [n for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready"]
            if len(ready) == len(nodes):
                return
            if time.monotonic() > deadline:
                raise EngineError(f"only {len(ready)} of {len(nodes)} swarm nodes became ready within 60 s")
            time.sleep(0.5)

    def load_image(self, ref: str, progress: Progress = print) -> None:
        """`docker save` the image once, `docker load` it into every node at the same time."""
        nodes = [n for n in self.nodes() if n.ip]
        if not nodes:
            raise UsageError(f"cluster {self.name} is not up: `lab cluster up`")
        progress(f"loading {ref} into {len(nodes)} nodes")
        with tempfile.TemporaryDirectory(prefix="lab-cluster-") as tmp:
            tarball = Path(tmp) / "image.tar"
            with docker_errors(f"saving {ref}"), tarball.open("wb") as out:
                image = self.host.images.get(ref)
                # Named by `ref` itself: `named=True` takes the image's first tag, which is another
                # name when the same image is tagged twice (a benchmark's copy, say).
                for chunk in image.save(named=ref if ref in image.tags else True):
                    out.write(chunk)

            def load(node: Node) -> None:
                with tarball.open("rb") as data, docker_errors(f"loading {ref} into {node.hostname}"):
                    connect(node.url, timeout=300).images.load(data)

            _all_at_once([(node.hostname, load, (node,), {}) for node in nodes], [], self._not_found())

    @sdk_errors
    def exec_on_node(self, hostname: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a node's own container (not in a task): its status and output."""
        result = self.host.containers.get(f"{self.name}-{hostname}").exec_run(command)
        return result.exit_code, result.output.decode("utf-8", "replace")

    # ---- cutting a node off --------------------------------------------------------------
    def cut(self, hostname: str) -> None:
        """Cut a node off the other nodes: its own firewall drops every packet to or from them
        (VXLAN 4789/udp, gossip 7946, swarm control 2377). The host, the bridge's gateway, still
        reaches its daemon, so the lab keeps reading its tasks' logs. A firewall rather than
        `docker network disconnect`: the node keeps its address, which its swarm advertises."""
        peers = [n.ip for n in self.nodes() if n.hostname != hostname and n.ip]
        rules = "".join(f"iptables -w -A {CUT_CHAIN} -s {ip} -j DROP && iptables -w -A {CUT_CHAIN} -d {ip} -j DROP && "
                        for ip in peers)
        script = (f"(iptables -w -N {CUT_CHAIN} 2>/dev/null || iptables -w -F {CUT_CHAIN}) && {rules}"
                  f"(iptables -w -C INPUT -j {CUT_CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CUT_CHAIN}) && "
                  f"(iptables -w -C OUTPUT -j {CUT_CHAIN} 2>/dev/null || iptables -w -I OUTPUT 1 -j {CUT_CHAIN})")
        self._firewall(hostname, script, "cutting off")

    def mend(self, hostname: str) -> None:
        """Undo `cut`: the node's rules go, and nothing of the chain is left."""
        script = (f"iptables -w -D INPUT -j {CUT_CHAIN} 2>/dev/null; iptables -w -D OUTPUT -j {CUT_CHAIN} 2>/dev/null; "
                  f"iptables -w -F {CUT_CHAIN} 2>/dev/null; iptables -w -X {CUT_CHAIN} 2>/dev/null; "
                  f"! iptables -w -S | grep -q -- {CUT_CHAIN}")
        self._firewall(hostname, script, "putting back")

    def _firewall(self, hostname: str, script: str, what: str) -> None:
        with docker_errors(f"{what} node {hostname}"):
            status, output = self.exec_on_node(hostname, ["sh", "-c", script])
        if status != 0:
            raise EngineError(f"{what} node {hostname} failed (exit status {status}): {output.strip()}")

    # ---- status and down ----------------------------------------------------------------
    def status(self) -> list[Node]:
        """The nodes, each asked for its swarm state, role and image count."""
        nodes = self.nodes()
        for node in nodes:
            if node.status != "running" or not node.ip:
                node.swarm = "down"
                continue
            try:
                info = connect(node.url, timeout=5).info()
            except LabError:
                node.swarm = "unreachable"
                continue
            swarm = info.get("Swarm") or {}
            node.swarm = swarm.get("LocalNodeState", "?")
            node.role = "manager" if swarm.get("ControlAvailable") else ("worker" if node.swarm == "active" else "")
            node.images = info.get("Images")
        return nodes

    def image_id(self) -> str | None:
        with docker_errors("looking up the cluster node image"):
            try:
                return self.host.images.get(cluster_image()).id
            except self._not_found():
                return None

    @sdk_errors
    def down(self, progress: Progress = print, image: bool = False) -> list[str]:
        """Remove the nodes (with their volumes: every inner image, container and swarm state), the
        network and, with `image`, the cluster node image; what was removed, one line each."""
        removed = []
        selector = {"label": f"{CLUSTER_LABEL}={self.name}"}
        # Node by node, each with its volume, all at once: deleting a node's images and
        # containers is most of the time, and the nodes do not share them.
        jobs = [(f"node {row['Names'][0].lstrip('/')}", self.host.api.remove_container, (row["Id"],),
                 {"force": True, "v": True}) for row in self.host.api.containers(all=True, filters=selector)]
        _all_at_once(jobs, removed, self._not_found())
        jobs = [(f"volume {v.name}", v.remove, (), {"force": True}) for v in self.host.volumes.list(filters=selector)]
        _all_at_once(jobs, removed, self._not_found())
        for network in self.host.networks.list(filters=selector):
            try:
                network.remove()
                removed.append(f"network {network.name}")
            except self._not_found():
                pass
        if image and self.image_id():
            self.host.images.remove(cluster_image())
            removed.append(f"image {cluster_image()}")
        for line in removed:
            progress(f"removed {line}")
        return removed

    def _network(self):
        with docker_errors("looking up the cluster network"):
            found = self.host.networks.list(filters={"label": f"{CLUSTER_LABEL}={self.name}"})
        return found[0] if found else None

    @staticmethod
    def _not_found():
        import docker.errors

        return docker.errors.NotFound


def _all_at_once(jobs: list, done: list[str], not_found: type[Exception]) -> None:
    """Run `(what, call, args, kwargs)` jobs in threads; `what` of each that did something goes
    to `done`; the first error (other than a vanished object) is raised once all have ended."""
    errors: list[Exception] = []

    def run(what, call, args, kwargs) -> None:
        try:
            call(*args, **kwargs)
            done.append(what)
        except not_found:
            pass
        except Exception as exc:  # noqa: BLE001 - raised below, after the other jobs ended
            errors.append(exc)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def clusters_of_session(session: str) -> list[str]:
    """Names of the clusters with any node, volume or network labelled with this test session
    (the suite's leftover check)."""
    client = connect()
    selector = {"label": [f"{SESSION_LABEL}={session}", CLUSTER_LABEL]}
    with docker_errors("listing clusters"):
        labels = [c.labels for c in client.containers.list(all=True, filters=selector)]
        labels += [v.attrs.get("Labels") or {} for v in client.volumes.list(filters=selector)]
        labels += [n.attrs.get("Labels") or {} for n in client.networks.list(filters=selector)]
    return sorted({found[CLUSTER_LABEL] for found in labels})
