"""Pure planning: which tc/ip/iptables commands realise an impairment, and the queue's config.

Nothing here runs anything, so every command line is unit-tested without root. A plan has
three parts: `setup` (structures made once: chains, jumps, the ingress ifb), `apply`
(idempotent, re-run by `set` on every change) and `teardown` (undo all, errors tolerated).
"""

from __future__ import annotations

import dataclasses

from lab.shaper.impairment import DIRECTIONS, Impairment, format_rate

Command = list[str]

CHAIN_OUT = "LAB-SHAPER-OUT"
CHAIN_IN = "LAB-SHAPER-IN"
DUP_MARK = 0x5A4D  # fwmark on duplicate copies we re-send, so our chains let them pass
DEFAULT_QUEUE = 7
NETEM_LIMIT = 10_000  # packets netem may hold: the default 1000 is small under delay


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a shaper acts: the device, the direction(s), and the names it creates."""

    dev: str = "eth0"
    direction: str = "both"
    queue_num: int = DEFAULT_QUEUE
    iptables: str = "iptables"
    ipv6: bool = False  # the namespace has IPv6 addresses: every rule goes to ip6tables too

    @property
    def tables(self) -> list[str]:
        """The iptables programs the rules go to: IPv4's, and its IPv6 twin when asked."""
        return [self.iptables] + ([self.iptables.replace("iptables", "ip6tables", 1)] if self.ipv6 else [])

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"bad direction {self.direction!r}: one of {', '.join(DIRECTIONS)}")

    @property
    def egress(self) -> bool:
        return self.direction in ("egress", "both")

    @property
    def ingress(self) -> bool:
        return self.direction in ("ingress", "both")

    @property
    def ifb(self) -> str:
        """The ifb device that carries redirected ingress traffic through a root qdisc."""
        return ("shp-" + self.dev)[:15]


@dataclasses.dataclass(frozen=True)
class QueueConfig:
    """What the userspace packet queue does with each packet it is given."""

    queue_num: int
    drop_queue: int
    delay_ms: float
    jitter_ms: float
    reorder: float
    duplicate: float
    corrupt: float
    dup_mark: int = DUP_MARK


@dataclasses.dataclass(frozen=True)
class Plan:
    setup: list[Command]
    apply: list[Command]
    teardown: list[Command]

    @property
    def commands(self) -> list[Command]:
        """Everything from a clean namespace to the impairment in force."""
        return self.setup + self.apply


def plan(impairment: Impairment, backend: str, dev: str = "eth0", direction: str = "both",
         queue_num: int = DEFAULT_QUEUE, iptables: str = "iptables", ipv6: bool = False) -> Plan:
    """The commands that put `impairment` on `dev` with `backend` (`netem` or `userspace`)."""
    target = Target(dev, direction, queue_num, iptables, ipv6)
    if backend == "netem":
        return Plan(_ingress_setup(target), netem_apply(impairment, target), _qdisc_teardown(target))
    if backend == "userspace":
        return Plan(_ingress_setup(target) + _chain_setup(target),
                    userspace_apply(impairment, target),
                    _chain_teardown(target) + _qdisc_teardown(target))
    raise ValueError(f"bad backend {backend!r}: netem or userspace")


def drop_queue(queue_num: int) -> int:
    """The NFQUEUE whose every packet is dropped: where the `statistic` match sends the lost."""
    return queue_num + 1


def queue_config(impairment: Impairment, queue_num: int = DEFAULT_QUEUE) -> QueueConfig:
    """The userspace queue's part of an impairment (loss and rate are done in the kernel)."""
    return QueueConfig(queue_num, drop_queue(queue_num), impairment.delay_ms, impairment.jitter_ms, impairment.reorder,
                       impairment.duplicate, impairment.corrupt)


def netem_args(impairment: Impairment) -> list[str]:
    """netem's options for one direction, in tc's syntax."""
    args: list[str] = []
    if impairment.delay_ms or impairment.jitter_ms:
        args += ["delay", _ms(impairment.delay_ms)]
        if impairment.jitter_ms:
            args.append(_ms(impairment.jitter_ms))
    for name in ("loss", "duplicate", "reorder", "corrupt"):
        value = getattr(impairment, name)
        if value:
            args += [name, _percent(value)] if name != "loss" else ["loss", "random", _percent(value)]
    if impairment.rate_bits:
        args += ["rate", format_rate(impairment.rate_bits)]
    return args + ["limit", str(NETEM_LIMIT)]


def tbf_args(rate_bits: int) -> list[str]:
    """tbf options: a burst of at least two full frames (or 10 ms), a queue of 250 ms."""
    rate_bytes = rate_bits // 8
    burst = max(3200, rate_bytes // 100)
    limit = burst + max(rate_bytes // 4, 3200)
    return ["rate", format_rate(rate_bits), "burst", str(burst), "limit", str(limit)]


def netem_apply(impairment: Impairment, target: Target) -> list[Command]:
    """Replace (or remove) the root netem qdisc of each impaired direction's device."""
    commands: list[Command] = []
    for dev in _qdisc_devices(target):
        if impairment.is_noop:
            commands.append(["tc", "qdisc", "del", "dev", dev, "root"])
        else:
            commands.append(["tc", "qdisc", "replace", "dev", dev, "root", "netem", *netem_args(impairment)])
    return commands


def userspace_apply(impairment: Impairment, target: Target) -> list[Command]:
    """Refill our chains (loss by `statistic`, the rest by NFQUEUE) and set tbf for rate."""
    commands: list[Command] = []
    for ipt, chain in ((ipt, chain) for ipt in _programs(target) for chain in _chains(target)):
        commands.append(ipt + ["-F", chain])
        if impairment.duplicate:
            commands.append(ipt + ["-A", chain, "-m", "mark", "--mark", hex(DUP_MARK), "-j", "RETURN"])
        if impairment.loss:
            # Not `-j DROP`: a netfilter drop on the output path fails the sender's send() with
            # EPERM, which a lost packet on a wire never does; the drop queue drops silently.
            commands.append(ipt + ["-A", chain, "-m", "statistic", "--mode", "random",
                                   "--probability", _fraction(impairment.loss),
                                   "-j", "NFQUEUE", "--queue-num", str(drop_queue(target.queue_num)),
                                   "--queue-bypass"])
        if impairment.needs_queue:
            commands.append(ipt + ["-A", chain, "-j", "NFQUEUE", "--queue-num", str(target.queue_num),
                                   "--queue-bypass"])
    for dev in _qdisc_devices(target):
        if impairment.rate_bits:
            commands.append(["tc", "qdisc", "replace", "dev", dev, "root", "tbf", *tbf_args(impairment.rate_bits)])
        else:
            commands.append(["tc", "qdisc", "del", "dev", dev, "root"])
    return commands


def _chains(target: Target) -> list[str]:
    return ([CHAIN_OUT] if target.egress else []) + ([CHAIN_IN] if target.ingress else [])


def _hooks(target: Target) -> list[list[str]]:
    """The jumps from the built-in chains into ours, as rule specs without -I/-D."""
    hooks = []
    if target.egress:
        hooks.append(["OUTPUT", "-o", target.dev, "-j", CHAIN_OUT])
    if target.ingress:
        hooks.append(["INPUT", "-i", target.dev, "-j", CHAIN_IN])
    return hooks


def _programs(target: Target) -> list[list[str]]:
    return [[program, "-w"] for program in target.tables]


def _chain_setup(target: Target) -> list[Command]:
    commands = []
    for ipt in _programs(target):
        commands += [ipt + ["-N", chain] for chain in _chains(target)]
        for hook in _hooks(target):
            commands.append(ipt + ["-I", hook[0], "1", *hook[1:]])
    return commands


def _chain_teardown(target: Target) -> list[Command]:
    commands = []
    for ipt in _programs(target):
        commands += [ipt + ["-D", *hook] for hook in _hooks(target)]
        for chain in _chains(target):
            commands += [ipt + ["-F", chain], ipt + ["-X", chain]]
    return commands


def _ingress_setup(target: Target) -> list[Command]:
    """Redirect everything arriving on dev through an ifb, whose root qdisc then shapes it."""
    if not target.ingress:
        return []
    return [
        ["ip", "link", "add", target.ifb, "type", "ifb"],
        ["ip", "link", "set", target.ifb, "up"],
        ["tc", "qdisc", "add", "dev", target.dev, "handle", "ffff:", "ingress"],
        ["tc", "filter", "add", "dev", target.dev, "parent", "ffff:", "protocol", "all", "u32",
         "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", target.ifb],
    ]


def _qdisc_devices(target: Target) -> list[str]:
    return ([target.dev] if target.egress else []) + ([target.ifb] if target.ingress else [])


def _qdisc_teardown(target: Target) -> list[Command]:
    commands: list[Command] = []
    if target.egress:
        commands.append(["tc", "qdisc", "del", "dev", target.dev, "root"])
    if target.ingress:
        commands += [["tc", "qdisc", "del", "dev", target.dev, "ingress"],
                     ["ip", "link", "del", target.ifb]]
    return commands


def _trim(value: float, places: int) -> str:
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def _ms(value: float) -> str:
    return _trim(value, 3) + "ms"


def _percent(fraction: float) -> str:
    return _trim(fraction * 100, 6) + "%"


def _fraction(value: float) -> str:
    return _trim(value, 8)
