"""The validated model of a scenario file: plain data and its rules, no I/O beyond reading YAML.

A scenario names a server, a set of clients, optional impairments and timed faults, and the
expectations that must hold once the run is over. `load_scenario` turns a YAML file into a
`Scenario` or raises `ScenarioError` naming the file, the field and what is allowed.

About 400 lines: the checks that span fields (targets of faults, per-client overrides, UDP sizes)
need the whole model in view. Parts with a life of their own live beside it: `topology.py`
(networks, routers), `programs/spec.py` (a learner's program), `fault_actions.py`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lab.errors import ScenarioError
from lab.expect import Expectation
from lab.fault_actions import FaultAction
from lab.home import project_root
from lab.placement import Placement
from lab.programs.spec import Program, resolve_program_paths
from lab.records.options import UDP_PAYLOAD_MAX
from lab.shaper import impairment as shaper
from lab.topology import Family, NetworkDef, RouterSpec, check_topology

Proto = Literal["tcp", "udp"]
Mode = Literal["iterative", "threaded", "async"]
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# A fault target that names a node of a `lab cluster` (node1, node2, ...) instead of a service:
# only `disconnect` takes one (the node is cut off the other nodes, docs/swarm.md).
NODE_TARGET = re.compile(r"^node[1-9][0-9]?$")
PUBLISH = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}:)?(?P<ports>\d{1,5}:\d{1,5})(/(tcp|udp))?$")
YAML_KEY = re.compile(r"^\s*(?:-\s+)?([\w-]+)\s*:")
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _distinct_protos(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("at least one of tcp, udp")
    if len(set(value)) != len(value):
        raise ValueError("each protocol once")
    return value


Protos = Annotated[list[Proto], AfterValidator(_distinct_protos)]


def _one_family_or_many(value: object) -> object:
    """`family: ipv6` is the one-family list `[ipv6]`."""
    return [value] if isinstance(value, str) else value


def _distinct_families(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("at least one of ipv4, ipv6")
    if len(set(value)) != len(value):
        raise ValueError("each family once")
    return value


# ipv4, ipv6, or both as a list: a dual-stack client talks to the server over each in turn.
Families = Annotated[list[Family], BeforeValidator(_one_family_or_many), AfterValidator(_distinct_families)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def field_error(field: str | None, message: str) -> PydanticCustomError:
    """An error found by a check across fields, about one of them: describe_errors puts `field`
    into the error's place, so the user reads `clients.messages.0: ...`."""
    return PydanticCustomError("field", "{message}", {"field": field, "message": message})


class Impairment(Model):
    """What the network does to one container's traffic; applied by its shaper sidecar.

    The values are checked by the shaper's own rules (lab/shaper/impairment.py), so a scenario
    that validates is one its shaper accepts.
    """

    delay_ms: float = 0
    jitter_ms: float = 0
    loss: float = 0
    duplicate: float = 0
    reorder: float = 0
    corrupt: float = 0
    rate: str | None = Field(default=None, description="e.g. 1mbit, 500kbit")
    direction: Literal[shaper.DIRECTIONS] = "egress"

    @model_validator(mode="after")
    def _shaper_accepts(self) -> Impairment:
        try:
            shaper.Impairment.from_dict(self.model_dump(include=set(shaper.FIELDS)))
        except shaper.ImpairmentError as exc:
            # The field goes into the error's place (describe_errors), the rule spelled as here.
            got = "" if exc.field is None else f" (got {exc.value!r})"
            raise field_error(exc.field, exc.rule_text(str) + got) from None
        return self

    def shaper_args(self, direction: bool = True) -> list[str]:
        """The impairment as `python3 -m lab.shaper` options (`set` cannot change the direction)."""
        args: list[str] = []
        for name in ("delay_ms", "jitter_ms", "loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if value:
                args += [f"--{name.replace('_', '-')}", f"{value:g}"]
        if self.rate:
            args += ["--rate", self.rate]
        if direction:
            args += ["--direction", self.direction]
        return args


class ServerSpec(Model):
    mode: Mode = "async"
    proto: Protos = ["tcp", "udp"]
    port: Annotated[int, Field(ge=1, le=65535)] = 19200
    idle_timeout: Annotated[float, Field(gt=0, le=3600)] = 30
    impair: Impairment | None = None
    program: Program | None = None  # a learner's own server instead of the echo server
    networks: list[str] | None = Field(default=None, description="names from `networks:`; default the first")


class ClientSpec(Model):
    """How clients talk; every field can be overridden per client under `clients.each`."""

    proto: Protos = ["tcp", "udp"]
    messages: list[Annotated[str, Field(min_length=1)]] | None = None
    message_count: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # UDP allows at most 65507 (_fits_a_datagram); TCP any size, capped so that one message stays
    # far inside a client's memory limit.
    message_size: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
    interval: Annotated[float, Field(ge=0, le=60)] = 0.5
    timeout: Annotated[float, Field(gt=0, le=600)] = 2.0
    retries: Annotated[int, Field(ge=0, le=100)] = 2
    max_loss: Fraction = 0
    sessions: Annotated[int, Field(ge=1, le=1000)] = 1
    reconnect_for: Annotated[float, Field(ge=0, le=600)] = 0
    start_after: Annotated[float, Field(ge=0, le=600)] = 0
    impair: Impairment | None = None
    program: Program | None = None  # a learner's own client instead of the echo client
    networks: list[str] | None = Field(default=None, description="names from `networks:`; default the first")
    family: Families | None = Field(
        default=None, description="ipv4, ipv6 or [ipv4, ipv6] (each in turn) toward the server; default ipv4 where both")
    source_port: Annotated[int, Field(ge=1024, le=65535)] | None = Field(
        default=None, description="bind to this source port (two clients behind one NAT may share it)")

    @model_validator(mode="after")
    def _one_message_source(self) -> ClientSpec:
        if self.messages is not None and (self.message_count is not None or self.message_size is not None):
            raise ValueError("give either messages, or message_count/message_size, not both")
        if self.messages is not None and not self.messages:
            raise ValueError("messages must not be empty (leave it out for the default messages)")
        if "udp" in self.proto:
            self._fits_a_datagram()
        if self.source_port is not None and self.sessions != 1:
            raise field_error("source_port", "one source port serves one session: leave sessions at 1")
        if self.program is not None and self.family and len(self.family) > 1:
            raise field_error("family", "a learner's program talks to the one address its args name: "
                                        "give one family (ipv4 or ipv6), or use the lab's echo client")
        return self

    def _fits_a_datagram(self) -> None:
        """Every message the client will send over UDP fits in one datagram, as the client
        requires (a message given twice is sent the second time with a `#SEQ ` prefix)."""
        allowed = f"a UDP datagram carries at most {UDP_PAYLOAD_MAX} bytes; send it over proto: [tcp] only"
        if self.message_size is not None and self.message_size > UDP_PAYLOAD_MAX:
            raise field_error("message_size", f"{allowed} (got {self.message_size})")
        messages = self.messages or []
        for i, text in enumerate(messages):
            size = len(text.encode("utf-8")) + (len(f"#{i + 1} ") if text in messages[:i] else 0)
            if size > UDP_PAYLOAD_MAX:
                raise field_error(f"messages.{i}", f"{allowed} (got {size} bytes)")


def _all_optional(model: type[Model], name: str, doc: str) -> type[Model]:
    """The same fields as `model`, each optional with no default: unset means inherit."""
    fields = {}
    for key, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[key] = (annotation | None, None)
    derived = create_model(name, __base__=Model, **fields)
    derived.__doc__ = doc
    return derived


ClientOverride = _all_optional(ClientSpec, "ClientOverride", "Per-client differences from `clients`; unset fields inherit.")


class ClientsSpec(ClientSpec):
    count: Annotated[int, Field(ge=1, le=500)] = 3
    each: dict[str, ClientOverride] = {}




class Fault(Model):
    """One event on the run's timeline, `at` seconds after the clients start."""

    at: Annotated[float, Field(ge=0, le=3600)]
    action: FaultAction
    target: str
    duration: Annotated[float, Field(gt=0, le=3600)] | None = Field(
        default=None, description="undo after this many seconds (pause, disconnect, stop, impair)"
    )
    impair: Impairment | None = None

    @model_validator(mode="after")
    def _impair_needs_values(self) -> Fault:
        if self.duration is not None and self.action == "restart":
            raise ValueError("restart has nothing to undo: leave out duration (or use stop with a duration)")
        if self.action == "impair" and self.impair is None:
            raise ValueError("action impair needs an `impair:` mapping (e.g. {loss: 0.3})")
        if self.action != "impair" and self.impair is not None:
            raise ValueError(f"`impair:` only goes with action impair, not {self.action}")
        return self


class NetworkSpec(Model):
    subnet: str = "10.77.0.0/24"

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value)
        except ValueError:
            raise ValueError("subnet must be an IPv4 network in CIDR form, e.g. 10.77.0.0/24") from None
        if network.version != 4 or network.prefixlen > 28:
            raise ValueError("subnet must be an IPv4 network of /28 or larger, e.g. 10.77.0.0/24")
        return value


class Scenario(Model):
    name: str
    description: str
    server: ServerSpec = ServerSpec()
    clients: ClientsSpec = ClientsSpec()
    network: NetworkSpec = NetworkSpec()
    faults: list[Fault] = []
    expect: list[Expectation] = []
    timeout: Annotated[float, Field(gt=0, le=3600)] = 120
    publish: list[str] = Field(default=[], description="host port mappings for the server, e.g. '19200:19200'")
    capture: bool = Field(default=True, description="record the lab network's packets (docs/wire.md)")
    # What a run ends with when the lab works: `failed` for a scenario that shows a broken
    # program (its expectations say what the lab must find), so a suite judges it as expected.
    outcome: Literal["passed", "failed"] = "passed"
    networks: dict[str, NetworkDef] | None = Field(default=None, description="named networks (lab/topology.py)")
    routers: dict[str, RouterSpec] = {}
    placement: Placement | None = Field(default=None, description="which node each host runs on (lab/placement.py)")

    @field_validator("publish")
    @classmethod
    def _publish(cls, value: list[str]) -> list[str]:
        for item in value:
            match = PUBLISH.match(item)
            if not match or not all(1 <= int(p) <= 65535 for p in match.group("ports").split(":")):
                raise ValueError(f"{item!r} is not HOST_PORT:CONTAINER_PORT[/tcp|/udp] (ports 1-65535, "
                                 "optionally prefixed by a host IP)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVICE_NAME.match(value):
            raise ValueError("name must be lowercase letters, digits and dashes, starting with a letter")
        return value

    @model_validator(mode="after")
    def _topology(self) -> Scenario:
        if self.networks is not None and "network" in self.model_fields_set:
            raise ValueError("network: give either `network:` (one network) or `networks:`, not both")
        clients = {name: self.client(name) for name in self.client_names() if self._valid_client(name)}
        if self.networks is None and any(c.family for c in clients.values()):
            raise ValueError("clients.family: needs `networks:` with an ipv6 network")
        check_topology(self.networks, self.routers, {n: c.networks for n, c in clients.items()},
                       self.server.networks, {n: c.family for n, c in clients.items()}, self.server.port)
        return self

    def _valid_client(self, name: str) -> bool:
        try:
            self.client(name)
        except ValidationError:
            return False  # reported by _targets_exist, naming the override
        return True

    @model_validator(mode="after")
    def _targets_exist(self) -> Scenario:
        names = set(self.client_names()) | {"server"} | set(self.routers)
        for key in self.clients.each:
            if key not in self.client_names():
                raise ValueError(
                    f"clients.each.{key}: no such client; clients are {', '.join(self.client_names())}"
                )
            try:
                self.client(key)
            except ValidationError as exc:
                raise ValueError(f"clients.each.{key}: {describe_errors(exc)}") from None
        for i, fault in enumerate(self.faults):
            if fault.target not in names and NODE_TARGET.match(fault.target):
                if fault.action != "disconnect" or fault.duration is None:
                    raise ValueError(
                        f"faults.{i}.target: {fault.target} names a swarm node; a node takes only action "
                        "disconnect with a duration (cut it off the other nodes, then put it back), "
                        + (f"not {fault.action}" if fault.action != "disconnect" else "and this one has none")
                    )
                continue
            if fault.target not in names:
                raise ValueError(f"faults.{i}.target: {fault.target!r} is not a service; use one of "
                                 f"{', '.join(sorted(names))} (or a swarm node, node1, node2, ..., for disconnect)")
            if fault.action == "impair":
                declared = self.impair_of(fault.target)
                if declared is None:
                    raise ValueError(
                        f"faults.{i}: {fault.target} has no impairment helper; "
                        "declare `impair: {}` on it to change it during the run"
                    )
                if "direction" in fault.impair.model_fields_set and fault.impair.direction != declared.direction:
                    raise ValueError(
                        f"faults.{i}.impair.direction: {fault.target}'s shaper runs with direction "
                        f"{declared.direction}; a fault changes the values, not the direction"
                    )
        return self

    @model_validator(mode="after")
    def _placed_clients_exist(self) -> Scenario:
        if self.placement is not None and isinstance(self.placement.clients, dict):
            for key in self.placement.clients:
                if key not in self.client_names():
                    raise ValueError(f"placement.clients.{key}: no such client; clients are "
                                     f"{', '.join(self.client_names())}")
        return self

    def is_node(self, target: str) -> bool:
        """Does a fault's target name a swarm node rather than one of the scenario's services?"""
        services = {"server", *self.client_names(), *self.routers}
        return target not in services and bool(NODE_TARGET.match(target))

    def node_faults(self) -> list[tuple[int, Fault]]:
        """The faults (with their index in `faults`) whose target is a swarm node."""
        return [(i, f) for i, f in enumerate(self.faults) if self.is_node(f.target)]

    def client_names(self) -> list[str]:
        return [f"client{i}" for i in range(1, self.clients.count + 1)]

    def client(self, name: str) -> ClientSpec:
        """The effective settings of one client: `clients` with its `each` override applied."""
        base = self.clients.model_dump(exclude={"count", "each"})
        override = self.clients.each.get(name)
        if override:
            base.update(override.model_dump(exclude_unset=True))
        return ClientSpec.model_validate(base)

    def impair_of(self, service: str) -> Impairment | None:
        if service == "server":
            return self.server.impair
        return self.client(service).impair

    def with_clients(self, count: int) -> Scenario:
        """The same scenario with another number of clients (`lab run --clients N`)."""
        data = self.model_dump(exclude_unset=True)
        data.setdefault("clients", {})["count"] = count
        try:
            return Scenario.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(f"--clients {count} does not fit scenario {self.name}: {describe_errors(exc)}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file; the scenario's name defaults to the file's stem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: {_where(raw, exc.start)}not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                            "a scenario file must be saved as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ScenarioError(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with at least `description:`, got {type(data).__name__}")
    resolve_program_paths(data, path, project_root())
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise ScenarioError(f"{path}: name: {data['name']!r} must match the file name {path.stem!r}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: " + describe_errors(exc)) from None


def _where(raw: bytes, offset: int) -> str:
    """`line N: key: ` for a byte offset of a YAML file, the key being the one its line sets."""
    start = raw.rfind(b"\n", 0, offset) + 1
    key = YAML_KEY.match(raw[start:offset].decode("utf-8", "replace"))
    line = raw.count(b"\n", 0, offset) + 1
    return f"line {line}: " + (f"{key.group(1)}: " if key else "")


def describe_errors(exc: ValidationError) -> str:
    """pydantic's errors as `field.path: what is wrong (got value)`, one per line."""
    lines = []
    for err in exc.errors(include_url=False):
        where = [*err["loc"], *([err["ctx"]["field"]] if err.get("ctx", {}).get("field") else [])]
        loc = ".".join(str(part) for part in where if not _is_union_tag(part))
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) or err["type"] == "missing" else f" (got {got!r})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        # A check across fields names its own path in the message.
        lines.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return "\n  ".join(dict.fromkeys(lines))


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def find_scenario(name_or_path: str, directory: Path) -> Path:
    """A scenario by name (in `directory`) or by path; unknown names list what exists."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or "/" in name_or_path:
        if not candidate.is_file():
            raise ScenarioError(f"{candidate}: no such scenario file")
        return candidate
    path = directory / f"{name_or_path}.yaml"
    if path.is_file():
        return path
    known = ", ".join(scenario_names(directory)) or "none"
    raise ScenarioError(f"{path}: no scenario named {name_or_path!r}; available: {known}")


def scenario_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))
