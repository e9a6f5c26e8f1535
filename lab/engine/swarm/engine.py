"""`SwarmEngine`: the `Engine` of a Docker Swarm, so a run spans several hosts.

A run is one stack (`docker stack deploy` of the run's compose file turned into a stack by
`stack.py`) on the swarm a manager's daemon leads. What the run calls a container is a swarm
task: each has its node, its overlay address and its own container on that node.

Two ways to reach the swarm, and what each allows:

- a manager only (a real swarm: `$LAB_SWARM_HOST` or the current Docker context): lifecycle,
  tasks, logs (through the manager, `GET /tasks/ID/logs`) and restarting a service;
- every node's daemon too (`lab cluster`, whose nodes the lab can reach): logs read from each
  task's own container on its node, and fault actions on those containers (kill, stop, pause);
  a whole node can be cut off the others for a few seconds (a fault whose target is `node3`).

What swarm cannot do is refused before a run starts, by `scenario_for`, with exit status 2. The
wire view is off on a swarm: the capture helper records a host's bridge, and a swarm's packets
cross the overlay between nodes.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from lab.engine import ContainerInfo, LabelledProject
from lab.engine.interface import labelled_entry
from lab.engine.swarm.docker_api import connect, docker_errors, sdk_errors
from lab.engine.swarm.stack import to_stack, to_yaml
from lab.errors import EngineError, UsageError
from lab.labels import MANAGED_LABEL, NETWORK, ROLE_LABEL, SERVICE_LABEL

STACK_LABEL = "com.docker.stack.namespace"
# A record's time, at the front of its line (lab/records/writer.py), as `docker logs --timestamps` puts it.
_RECORD_TS = re.compile(rb'\{"v":\d+,(?:"n":\d+,)?"ts":"([^"]+)"')
# A task's state as the container states a run understands.
TASK_STATES = {"running": "running", "complete": "exited", "failed": "exited", "shutdown": "exited",
               "rejected": "exited", "orphaned": "exited", "remove": "exited"}
# Fault actions on a task's container, through its node's daemon.
ON_CONTAINER = {"kill": lambda c: c.kill(), "stop": lambda c: c.stop(timeout=3), "pause": lambda c: c.pause(),
                "unpause": lambda c: c.unpause()}
WIRE_CHECKS = ("retransmissions", "lost_where", "handshake_ms")  # lab/expect/wire.py
# Fault actions on a whole service, through the manager: a new task replaces the old one.
ON_SERVICE = ("restart", "start")
# The longest a node may be cut off: inside the manager's grace for a silent node (it marked one
# down 13.5 to 14.3 s into a cut, benchmarks/node_cut_grace.py), so the swarm neither marks it
# down nor shuts its tasks down when it returns.
MAX_NODE_CUT = 10.0


class SwarmEngine:
    """A Docker Swarm, through its manager's daemon and, where reachable, each node's."""

    shares_host_files = False  # tasks run on other nodes: no bind of this host reaches them
    places_on_nodes = True  # a scenario's `placement:` chooses each task's node

    def __init__(self, manager_url: str | None, cluster=None, endpoint_mode: str | None = None,
                 where: str = "") -> None:
        self.manager_url = manager_url  # None: the environment's engine (DOCKER_HOST)
        self.cluster = cluster  # the lab cluster it runs on, if any
        # hostname -> daemon URL of every node the lab can reach; empty on a real swarm
        self.node_urls = {n.hostname: n.url for n in cluster.nodes() if n.ip} if cluster else {}
        self.where = where or (manager_url or "the current Docker context")
        self._endpoint_mode = endpoint_mode or os.environ.get("LAB_SWARM_ENDPOINT_MODE")
        self._manager = None
        self._nodes: dict[str, object] = {}
        self._tasks: dict[str, dict] = {}  # task id -> the task as last listed
        self._hostnames: dict[str, str] = {}  # node id -> hostname
        self._kept_logs: dict[str, bytes] = {}  # task id -> its logs, read before the task went
        self._cut: set[str] = set()  # nodes cut off now (put back at the latest when the run stops)

    # ---- connections --------------------------------------------------------------------------
    @property
    def manager(self):
        if self._manager is None:
            self._manager = connect(self.manager_url)
            with docker_errors("swarm info"):
                swarm = self._manager.info().get("Swarm") or {}
            if not swarm.get("ControlAvailable"):
                raise UsageError(f"{self.where} is not a swarm manager (swarm state: "
                                 f"{swarm.get('LocalNodeState') or 'unknown'}); `lab cluster up` starts one")
        return self._manager

    def node(self, hostname: str):
        """The daemon of one node (lab cluster only)."""
        if hostname not in self._nodes:
            url = self.node_urls.get(hostname)
            if url is None:
                raise EngineError(f"node {hostname}'s daemon is not reachable from here (only the manager is)")
            self._nodes[hostname] = connect(url)
        return self._nodes[hostname]

    def require(self) -> SwarmEngine:
        self.manager  # noqa: B018 - connects, checks it leads a swarm
        return self

    # ---- what it can run ------------------------------------------------------------------------
    def scenario_for(self, scenario):
        """The scenario without its capture (see the module docstring), or one UsageError naming
        everything it asks that swarm cannot do, and why."""
        problems = []
        wire = sorted({e.check for e in scenario.expect if e.check in WIRE_CHECKS})
        if wire:
            problems.append(f"expectations {', '.join(wire)}: they read the wire view, and there is no capture "
                            "on a swarm (packets cross the overlay between nodes, not a bridge of this host)")
        impaired = [name for name in ("server", *scenario.client_names()) if scenario.impair_of(name) is not None]
        if impaired:
            problems.append(f"impairments ({', '.join(impaired)}): the shaper sidecar shares its service's network "
                            "namespace, and swarm services cannot share one")
        problems += self._node_cut_problems(scenario)
        for fault in scenario.faults:
            if scenario.is_node(fault.target):
                continue  # a node, not a service: checked above
            if fault.action in ("disconnect", "reconnect"):
                problems.append(f"fault {fault.action} of {fault.target}: a swarm task cannot leave an overlay "
                                "network it was deployed on")
            elif fault.action == "impair":
                problems.append(f"fault impair of {fault.target}: no shaper on swarm (see impairments)")
            elif fault.action in ON_CONTAINER and not self.node_urls:
                problems.append(f"fault {fault.action} of {fault.target}: needs the node's daemon, and only the "
                                "manager is reachable (a `lab cluster` has every node's)")
        if scenario.networks is not None or scenario.routers:
            problems.append("named networks and routers: the swarm engine runs single-network scenarios (one "
                            "overlay; a router's helper shares its host's network namespace, which swarm cannot)")
        if scenario.publish:
            problems.append("publish: host ports are not part of the swarm engine")
        problems += self._missing_nodes(scenario.placement)
        if problems:
            raise UsageError("the swarm engine cannot run scenario " + scenario.name + ": " + "; ".join(problems))
        return scenario.model_copy(update={"capture": False})

    def _node_cut_problems(self, scenario) -> list[str]:
        """Why the scenario's node faults (`disconnect` of node2, ...) cannot run here, if they cannot."""
        problems = []
        for i, fault in scenario.node_faults():
            if self.cluster is None:
                problems.append(f"faults.{i}.target: disconnect of node {fault.target}: the lab cuts off only the "
                                "nodes of a `lab cluster` it made (containers on this host), and cannot cut a real "
                                "machine's cable")
            elif fault.target not in self.node_urls:
                problems.append(f"faults.{i}.target: lab cluster {self.cluster.name} has no node {fault.target} "
                                f"(its nodes: {', '.join(sorted(self.node_urls)) or 'none'})")
            elif fault.duration > MAX_NODE_CUT:
                problems.append(f"faults.{i}.duration: {fault.duration:g} s is more than {MAX_NODE_CUT:g} s; a node "
                                "cut off longer may be marked down by the manager (about 14 s without its "
                                "heartbeat), which then shuts its tasks down when it is back")
        return problems

    def _missing_nodes(self, placement) -> list[str]:
        """What a scenario's `placement:` names that the swarm has no ready, active node of (asks
        the manager only when the scenario names a node)."""
        named = placement.named_nodes() if placement is not None else {}
        if not named:
            return []
        nodes = self.ready_nodes()
        return [f"{field}: the swarm has no ready, active node {node!r} (its nodes: {', '.join(nodes) or 'none'})"
                for field, node in named.items() if node not in nodes]

    def cli(self, *args: str, timeout: float = 120) -> str:
        """The docker CLI against the swarm's manager (stacks are a CLI feature); its own output
        on failure."""
        env = dict(os.environ)
        if self.manager_url:
            env["DOCKER_HOST"] = self.manager_url
            env.pop("DOCKER_CONTEXT", None)
        cmd = ["docker", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  start_new_session=True)
        except FileNotFoundError:
            raise EngineError("the docker CLI is not installed (it deploys stacks)") from None
        except subprocess.TimeoutExpired:
            raise EngineError(f"`{' '.join(cmd)}` did not finish within {timeout:g} s") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise EngineError(f"`{' '.join(cmd)}` failed with exit status {proc.returncode}:\n{tail}")
        return proc.stdout

    # ---- the engine itself ----------------------------------------------------------------------
    @sdk_errors
    def versions(self) -> dict[str, str | None]:
        nodes = self.manager.nodes.list()
        return {"engine": self.manager.version().get("Version", "?"), "swarm_nodes": str(len(nodes)),
                "swarm": self.where}

    def project(self, name: str, file: Path) -> SwarmStack:
        return SwarmStack(name, file, self)

    # ---- a run's tasks ----------------------------------------------------------------------------
    @sdk_errors
    def containers(self, project: str) -> list[ContainerInfo]:
        """The stack's tasks, each as a container of the run (old tasks of a restarted service too)."""
        services = self.manager.api.services(filters={"label": f"{STACK_LABEL}={project}"})
        if not services:
            return []
        labels_of = {s["ID"]: (s["Spec"].get("TaskTemplate", {}).get("ContainerSpec", {}).get("Labels") or {})
                     for s in services}
        infos = []
        for task in self.manager.api.tasks(filters={"service": list(labels_of)}):
            if not task.get("NodeID"):
                continue  # not scheduled yet: no container, no node
            self._tasks[task["ID"]] = task
            infos.append(self._info(task, labels_of.get(task["ServiceID"], {}), project))
        return infos

    def _info(self, task: dict, labels: dict[str, str], project: str) -> ContainerInfo:
        status = task.get("Status") or {}
        state = TASK_STATES.get(status.get("State", ""), "created")
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode") if state == "exited" else None
        if state == "exited" and exit_code is None:
            exit_code = -1  # rejected or orphaned before a container ran
        service = labels.get(SERVICE_LABEL, "")
        node = self.hostname(task.get("NodeID"))
        return ContainerInfo(
            name=f"{service}.{task.get('Slot', 1)}.{node}.{task['ID'][:6]}",
            service=service, role=labels.get(ROLE_LABEL, ""), status=state, exit_code=exit_code,
            ip=_overlay_ip(task, f"{project}_{NETWORK}") if state == "running" else None,
            id=task["ID"], labels=labels, node=node)

    def hostname(self, node_id: str | None) -> str:
        if not node_id:
            return "unscheduled"
        if node_id not in self._hostnames:
            with docker_errors("node inspect"):
                for node in self.manager.api.nodes():
                    self._hostnames[node["ID"]] = node["Description"]["Hostname"]
        return self._hostnames.get(node_id, node_id[:12])

    def container_logs(self, container_id: str) -> bytes:
        """A task's output: from its container on its node when that daemon is reachable (what
        the node's engine kept), else through the manager (the swarm's log stream)."""
        if container_id in self._kept_logs:
            return self._kept_logs[container_id]
        task = self._task(container_id)
        if task is None:
            return b""
        node, container = self.hostname(task.get("NodeID")), _container_id(task)
        if node in self.node_urls and container:
            with docker_errors(f"logs of task {container_id[:12]} on {node}"):
                try:
                    return self.node(node).api.logs(container, stdout=True, stderr=True)
                except _not_found():
                    return b""
        return self._task_logs(container_id)

    def container_output(self, container_id: str, stdout: bool = True, stderr: bool = True) -> Iterator[bytes]:
        """A task's output line by line, each line with a time in front as `docker logs
        --timestamps` has it: a record's own `ts`, else the time of the record before it."""
        last = b"0000-00-00T00:00:00.000000000Z"
        for line in self.container_logs(container_id).splitlines():
            found = _RECORD_TS.match(line)
            if found:
                last = found.group(1)
            yield last + b" " + line + b"\n"

    def log_limits(self, container_id: str) -> str | None:
        return None  # the nodes' log settings are theirs; a gap is still found and said

    def keep_logs(self, task_id: str) -> None:
        """Read a task's logs now, before its service is scaled away."""
        self._kept_logs[task_id] = self._task_logs(task_id)

    @sdk_errors
    def _task_logs(self, task_id: str) -> bytes:
        api = self.manager.api
        response = api._get(api._url("/tasks/{0}/logs", task_id), params={"stdout": 1, "stderr": 1}, stream=True)
        return b"".join(api._get_result_tty(True, response, False))

    def image_of(self, container_id: str) -> str | None:
        task = self._task(container_id)
        if task is None:
            return None
        image = task["Spec"]["ContainerSpec"]["Image"]
        node = self.hostname(task.get("NodeID"))
        if node in self.node_urls:
            with docker_errors(f"image on {node}"):
                try:
                    return self.node(node).images.get(image).id
                except _not_found():
                    return None
        return image

    def _task(self, task_id: str) -> dict | None:
        with docker_errors("task inspect"):
            try:
                self._tasks[task_id] = self.manager.api.inspect_task(task_id)
            except _not_found():
                pass
        return self._tasks.get(task_id)

    # ---- faults ----------------------------------------------------------------------------------
    def act(self, container_id: str, action: str, network: str | None = None) -> None:
        """restart/start: the task's service gets a new task (what a restart is on swarm); kill,
        stop, pause, unpause: on the task's container, through its node's daemon."""
        task = self._task(container_id)
        if task is None:
            raise EngineError(f"task {container_id[:12]} is gone")
        if action in ON_SERVICE:
            # Without --detach the CLI returns once the new task runs, as a container restart does.
            self.cli("service", "update", "--force", "--quiet", task["ServiceID"])
        elif action in ON_CONTAINER:
            node = self.hostname(task.get("NodeID"))
            with docker_errors(f"{action} of task {container_id[:12]} on {node}"):
                ON_CONTAINER[action](self.node(node).containers.get(_container_id(task)))
        else:
            raise EngineError(f"the swarm engine cannot {action} a task")

    def act_on_node(self, node: str, action: str) -> None:
        """disconnect: cut a lab cluster's node off the other nodes (overlay, gossip and swarm
        control traffic alike); reconnect: put it back. The lab still reaches its daemon."""
        if self.cluster is None:
            raise EngineError(f"only a lab cluster's nodes can be cut off, and {self.where} is not one")
        if action == "disconnect":
            self._cut.add(node)
            self.cluster.cut(node)
        elif action == "reconnect":
            self.cluster.mend(node)
            self._cut.discard(node)
        else:
            raise EngineError(f"the swarm engine cannot {action} a node")

    def mend_all(self) -> None:
        """Put back every node still cut off (a run that timed out or was interrupted mid-cut)."""
        for node in sorted(self._cut):
            self.act_on_node(node, "reconnect")

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        task = self._task(container_id)
        if task is None:
            raise EngineError(f"task {container_id[:12]} is gone")
        node = self.hostname(task.get("NodeID"))
        with docker_errors(f"exec in task {container_id[:12]} on {node}"):
            result = self.node(node).containers.get(_container_id(task)).exec_run(command)
        return result.exit_code, result.output.decode("utf-8", "replace")

    # ---- network facts -----------------------------------------------------------------------------
    def network_name(self, project: str) -> str:
        return f"{project}_{NETWORK}"

    @sdk_errors
    def network_subnet(self, project: str) -> str | None:
        try:
            net = self.manager.networks.get(self.network_name(project))
        except _not_found():
            return None
        configs = (net.attrs.get("IPAM") or {}).get("Config") or []
        return configs[0].get("Subnet") if configs else None

    @sdk_errors
    def used_subnets(self) -> list[str]:
        """The subnets of the swarm's networks (as the manager sees them)."""
        return [config["Subnet"] for net in self.manager.api.networks()
                for config in ((net.get("IPAM") or {}).get("Config") or []) if config.get("Subnet")]

    def host_firewall(self, image: str, script: str) -> tuple[int, str]:
        """No host rules on a swarm: they are for routed scenarios, which `scenario_for` refuses.
        Runs nothing, so `lab clean --engine swarm` lists no rules to remove."""
        return 0, ""

    def endpoint_mode(self) -> str:
        """`vip` where the nodes' kernels have IPVS, `dnsrr` where they do not (a VIP then answers
        "no route to host"). Probed on node 1 when the lab can reach it; `dnsrr`, which works
        everywhere, on a real swarm unless `$LAB_SWARM_ENDPOINT_MODE` says otherwise."""
        if self._endpoint_mode is None:
            self._endpoint_mode = "dnsrr"
            if self.node_urls:
                first = sorted(self.node_urls)[0]
                code, _ = self.probe_on_node(first, ["test", "-e", "/proc/net/ip_vs"])
                self._endpoint_mode = "vip" if code == 0 else "dnsrr"
        return self._endpoint_mode

    def probe_on_node(self, hostname: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a node's own container (lab cluster), through the host's engine."""
        return self.cluster.exec_on_node(hostname, command)

    @sdk_errors
    def ready_nodes(self) -> list[str]:
        """Hostnames of the nodes that accept tasks, sorted (node1, node2, ...)."""
        nodes = self.manager.api.nodes()
        return sorted(n["Description"]["Hostname"] for n in nodes
                      if n["Status"]["State"] == "ready" and n["Spec"].get("Availability") == "active")

    # ---- images -----------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        """The image on the manager's node (every node has its own copy)."""
        with docker_errors("image inspect"):
            try:
                return self.manager.images.get(ref).id
            except _not_found():
                return None

    def image_labels(self, ref: str) -> dict[str, str] | None:
        with docker_errors("image inspect"):
            try:
                return dict(self.manager.images.get(ref).labels or {})
            except _not_found():
                return None

    def ensure_image(self, ref: str, host_id: str | None, progress: Callable[[str], None] = print) -> None:
        """Every node must run the image the host just built: on a lab cluster, nodes whose copy
        differs get it loaded; on a real swarm it must already be there (a registry or
        `docker save | docker load`)."""
        if self.node_urls:
            stale = []
            for hostname in sorted(self.node_urls):
                with docker_errors(f"image on {hostname}"):
                    try:
                        have = self.node(hostname).images.get(ref).id
                    except _not_found():
                        have = None
                if have != host_id:
                    stale.append(hostname)
            if stale:
                self.cluster.load_image(ref, progress=progress)
            return
        if self.image_id(ref) is None:
            raise EngineError(f"{ref} is not on the swarm manager: distribute it to every node (push it to your "
                              "registry, or `docker save` it and `docker load` it on each node)")

    def pull(self, ref: str) -> bool:
        return False  # nodes pull for themselves when a registry serves the image

    def tag(self, source: str, target: str) -> None:
        raise UsageError("images are built on this host (`lab build`), not on the swarm")

    def import_image(self, tarball: Path, ref: str, changes: list[str]) -> str:
        raise UsageError("images are built on this host (`lab build`), not on the swarm")

    def build_image(self, file: Path, service: str, env: dict[str, str],
                    on_line: Callable[[str], None] | None = None) -> None:
        raise UsageError("images are built on this host (`lab build`), not on the swarm")

    def prune_untagged(self, label: str) -> int:
        return 0

    # ---- what the lab labelled ---------------------------------------------------------------------
    @sdk_errors
    def managed_resources(self) -> dict[str, LabelledProject]:
        """The lab's stacks on the swarm: their services (as entries of `containers`) and networks."""
        projects: dict[str, LabelledProject] = {}
        selector = {"label": f"{MANAGED_LABEL}=true"}

        def entry_for(labels: dict[str, str], name: str) -> LabelledProject:
            return labelled_entry(projects, labels.get(STACK_LABEL) or name, labels)

        for service in self.manager.api.services(filters=selector):
            labels = service["Spec"].get("Labels") or {}
            name = service["Spec"]["Name"]
            entry_for(labels, name).containers.append(ContainerInfo(
                name=name, service=labels.get(SERVICE_LABEL, ""), role=labels.get(ROLE_LABEL, ""),
                status="service", exit_code=None, ip=None, id=service["ID"], labels=labels))
        for net in self.manager.api.networks(filters=selector):
            entry_for(net.get("Labels") or {}, net["Name"]).networks.append(net["Name"])
        return projects

    @sdk_errors
    def remove_resources(self, entry: LabelledProject) -> list[str]:
        removed = []
        for service in entry.containers:
            try:
                self.manager.api.remove_service(service.id)
                removed.append(f"service {service.name}")
            except _not_found():
                pass
        for name in entry.networks:
            if _remove_network_when_free(self.manager, name):
                removed.append(f"network {name}")
        return removed


class SwarmStack:
    """One run as a stack: `Project` on a swarm."""

    def __init__(self, name: str, file: Path, engine: SwarmEngine) -> None:
        self.name = name
        self.file = file
        self.engine = engine
        self.stack_file = file.with_name("stack.yaml")
        self._resolving = threading.Lock()
        self._resolved: str | None = None

    def resolved_config(self) -> str:
        """The stack file, written next to the compose file: what `docker stack deploy` reads.
        Resolved once: `lab run` asks for it in the background while it deploys, and the deploy
        must not read a file still being written (it did, one run in a few dozen)."""
        with self._resolving:
            if self._resolved is None:
                compose = yaml.safe_load(self.file.read_text(encoding="utf-8"))
                stack = to_stack(compose, nodes=self.engine.ready_nodes(),
                                 endpoint_mode=self.engine.endpoint_mode())
                text = to_yaml(stack, f"# stack {self.name}: {self.file.name} for a swarm\n")
                tmp = self.stack_file.with_suffix(".tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(self.stack_file)
                self._resolved = text
            return self._resolved

    def deploy(self) -> None:
        """The server first, then the clients once it runs (and is healthy: a task with a health
        check only counts as running then), as compose's `depends_on: service_healthy` does."""
        stack = yaml.safe_load(self.resolved_config())
        first = {**stack, "services": {name: s for name, s in stack["services"].items()
                                       if s["deploy"]["labels"].get(ROLE_LABEL) != "client"}}
        first_file = self.stack_file.with_name("stack-server.yaml")
        first_file.write_text(to_yaml(first), encoding="utf-8")
        for file in (first_file, self.stack_file):
            # `--resolve-image never`: the nodes run the image they have; asking a registry for
            # its digest first stalls for a minute where none answers.
            self._cli("stack", "deploy", "--resolve-image", "never", "--compose-file", str(file), self.name)
            self._wait_until_started()

    def _wait_until_started(self, timeout: float = 120) -> None:
        """Like `docker compose up -d`: return once every service's task has started (the fault
        timeline counts from here), or raise naming a task swarm could not start and why."""
        api = self.engine.manager.api
        deadline = time.monotonic() + timeout
        while True:
            with docker_errors(f"tasks of stack {self.name}"):
                services = api.services(filters={"label": f"{STACK_LABEL}={self.name}"})
                tasks = api.tasks(filters={"service": [s["ID"] for s in services]}) if services else []
            for task in tasks:
                status = task.get("Status") or {}
                if status.get("State") in ("rejected", "failed") and status.get("Err"):
                    raise EngineError(f"swarm could not start a task of stack {self.name}: {status['Err']}")
            started = {t["ServiceID"] for t in tasks
                       if (t.get("Status") or {}).get("State") in ("running", "complete")}
            if services and started >= {s["ID"] for s in services}:
                return
            if time.monotonic() > deadline:
                waiting = sorted(s["Spec"]["Name"] for s in services if s["ID"] not in started)
                raise EngineError(f"tasks of {', '.join(waiting) or self.name} not started within {timeout:g} s")
            time.sleep(0.25)

    def stop(self, grace: float = 3, talked_out: bool = False) -> None:
        """Stop every task's container, keeping the tasks and their containers for their logs (all
        at once, in any order: `talked_out` changes nothing here).

        On a lab cluster each container is stopped on its node (SIGTERM, SIGKILL after `grace`);
        swarm restarts nothing (restart policy none) and the stopped task stays. A manager alone
        can only scale the services to 0, which removes the tasks: their logs are read first and
        kept (what a program prints while it stops is then lost, and the gap check says so)."""
        engine = self.engine
        engine.mend_all()  # a node left cut off would keep its tasks' records out of reach of the swarm
        tasks = [t for t in engine.containers(self.name) if t.status == "running"]
        if engine.node_urls:
            errors = []

            def stop_one(info: ContainerInfo) -> None:
                try:
                    task = engine._task(info.id)
                    node = engine.hostname(task.get("NodeID"))
                    with docker_errors(f"stop of {info.name}"):
                        engine.node(node).api.stop(_container_id(task), timeout=int(max(grace, 1)))
                except EngineError as exc:
                    errors.append(str(exc))

            threads = [threading.Thread(target=stop_one, args=(t,)) for t in tasks]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise EngineError("; ".join(errors))
            return
        for info in engine.containers(self.name):
            engine.keep_logs(info.id)
        with docker_errors(f"scaling stack {self.name} to 0"):
            for service in engine.manager.services.list(filters={"label": f"{STACK_LABEL}={self.name}"}):
                service.scale(0)

    def remove(self) -> None:
        """`docker stack rm`, then wait until the network is really gone (removal is asynchronous,
        and a network whose tasks are still shutting down stays)."""
        self._cli("stack", "rm", self.name)
        manager = self.engine.manager
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with docker_errors("stack rm"):
                left = (manager.api.services(filters={"label": f"{STACK_LABEL}={self.name}"})
                        or manager.api.networks(filters={"label": f"{STACK_LABEL}={self.name}"}))
            if not left:
                return
            time.sleep(0.5)
        raise EngineError(f"stack {self.name} was not gone 60 s after `docker stack rm`")

    def _cli(self, *args: str) -> str:
        return self.engine.cli(*args)


def _overlay_ip(task: dict, network: str) -> str | None:
    for attachment in task.get("NetworksAttachments") or []:
        if (attachment.get("Network") or {}).get("Spec", {}).get("Name") == network:
            addresses = attachment.get("Addresses") or []
            if addresses:
                return addresses[0].split("/")[0]
    return None


def _container_id(task: dict) -> str | None:
    return ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")


def _remove_network_when_free(client, name: str, timeout: float = 30) -> bool:
    """Remove a swarm network and wait until it is gone: it stays in use for a moment after its
    services are removed, and the manager lists it until every node let go of it."""
    import docker.errors

    deadline = time.monotonic() + timeout
    removed = False
    while True:
        try:
            client.networks.get(name).remove()
            removed = True
        except docker.errors.NotFound:
            return removed
        except docker.errors.APIError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise EngineError(f"network {name} was still there {timeout:g} s after its removal")
        time.sleep(0.5)


def _not_found():
    import docker.errors

    return docker.errors.NotFound


def swarm_engine() -> SwarmEngine:
    """The swarm to run on: `$LAB_SWARM_HOST` (a manager's daemon URL) if set; else the lab
    cluster `$LAB_CLUSTER` when it is up; else the swarm of the current Docker context."""
    from lab.engine.swarm.cluster import Cluster

    url = os.environ.get("LAB_SWARM_HOST")
    if url:
        return SwarmEngine(url, where=f"LAB_SWARM_HOST={url}").require()
    cluster = Cluster()
    manager = cluster.manager_url()
    if manager:
        return SwarmEngine(manager, cluster, where=f"lab cluster {cluster.name}").require()
    return SwarmEngine(None, where="the current Docker context").require()
