"""The two ways to impair, behind one interface: kernel netem, or iptables + NFQUEUE + tbf.

A backend `start`s an impairment, `change`s it live, reports `counters`, and `stop`s leaving
nothing behind. The userspace one also hands the event loop its queue socket and timer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lab.shaper import kernel
from lab.shaper import plan as planning
from lab.shaper.impairment import Impairment
from lab.shaper.packetqueue import PacketQueue

_SENT_RE = re.compile(r"qdisc (\S+) .*?\n\s*Sent \d+ bytes (\d+) pkt \(dropped (\d+)", re.S)


def qdisc_counters(dev: str) -> dict[str, tuple[int, int]]:
    """{qdisc kind: (packets sent, packets dropped)} of dev's qdiscs."""
    return parse_qdisc_stats(kernel.run(["tc", "-s", "qdisc", "show", "dev", dev], may_fail=True).stdout)


def parse_qdisc_stats(text: str) -> dict[str, tuple[int, int]]:
    """{qdisc kind: (packets sent, packets dropped)} from `tc -s qdisc show` output."""
    counters: dict[str, tuple[int, int]] = {}
    for block in re.split(r"\n(?=qdisc )", text):
        match = _SENT_RE.search(block)
        if match:
            counters[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return counters


def chain_counters(iptables: str, chain: str) -> list[tuple[int, str]]:
    """(packets, target) for each rule of chain, in order."""
    return parse_chain_listing(kernel.run([iptables, "-w", "-L", chain, "-n", "-v", "-x"], may_fail=True).stdout)


def parse_chain_listing(text: str) -> list[tuple[int, str]]:
    """(packets, target) per rule from `iptables -L CHAIN -n -v -x` output."""
    rows = []
    for line in text.splitlines()[2:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0].isdigit():
            rows.append((int(fields[0]), fields[2]))
    return rows


class Backend:
    """Common part: run a plan's commands, keep the target and the impairment in force."""

    name = ""

    def __init__(self, target: planning.Target) -> None:
        self.target = target
        self.impairment = Impairment()

    def _plan(self, impairment: Impairment) -> planning.Plan:
        t = self.target
        return planning.plan(impairment, self.name, t.dev, t.direction, t.queue_num, t.iptables, t.ipv6)

    def start(self, impairment: Impairment) -> None:
        steps = self._plan(impairment)
        for command in steps.teardown:  # leftovers of a shaper that was killed
            kernel.run(command, may_fail=True)
        for command in steps.setup:
            kernel.run(command)
        self._apply(steps.apply)
        self.impairment = impairment

    def change(self, impairment: Impairment) -> None:
        self._apply(self._plan(impairment).apply)
        self.impairment = impairment

    @staticmethod
    def _apply(commands: list[list[str]]) -> None:
        for command in commands:
            kernel.run(command, may_fail=kernel.is_removal(command))

    def stop(self) -> None:
        for command in self._plan(self.impairment).teardown:
            kernel.run(command, may_fail=True)

    def counters(self) -> dict[str, int | None]:
        raise NotImplementedError

    # Event-loop hooks; only the userspace backend has a socket and timers.
    def fileno(self) -> int | None:
        return None

    def on_readable(self) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def on_timer(self) -> None:
        pass

    def _qdisc_totals(self) -> tuple[int, int]:
        sent = dropped = 0
        devices = ([self.target.dev] if self.target.egress else []) + ([self.target.ifb] if self.target.ingress else [])
        for dev in devices:
            for kind, (s, d) in qdisc_counters(dev).items():
                if kind in ("netem", "tbf"):
                    sent, dropped = sent + s, dropped + d
        return sent, dropped


class NetemBackend(Backend):
    """Everything in the kernel: a netem root qdisc on dev (egress) and on the ifb (ingress)."""

    name = "netem"

    def counters(self) -> dict[str, int | None]:
        sent, dropped = self._qdisc_totals()
        return {"seen": sent + dropped, "dropped": dropped, "delayed": None, "duplicated": None,
                "corrupted": None, "reordered": None, "rate_dropped": None, "held": None}


class UserspaceBackend(Backend):
    """iptables `statistic` picks the lost, an NFQUEUE reader does the rest, tbf the rate."""

    name = "userspace"

    def __init__(self, target: planning.Target, on_error: Callable[[str, str], None]) -> None:
        super().__init__(target)
        self.on_error = on_error
        self.queue: PacketQueue | None = None

    def start(self, impairment: Impairment) -> None:
        # Bind before any rule sends packets our way; --queue-bypass covers the moments without us.
        try:
            self.queue = PacketQueue(planning.queue_config(Impairment(), self.target.queue_num), self.on_error)
        except OSError as exc:
            raise kernel.ShaperError(f"cannot serve NFQUEUE {self.target.queue_num}: {exc}") from None
        self._configure_queue(impairment)
        super().start(impairment)

    def change(self, impairment: Impairment) -> None:
        self._configure_queue(impairment)
        super().change(impairment)

    def _configure_queue(self, impairment: Impairment) -> None:
        assert self.queue is not None
        try:
            self.queue.configure(planning.queue_config(impairment, self.target.queue_num))
        except OSError as exc:
            raise kernel.ShaperError(f"duplicate needs a raw socket (capability NET_RAW): {exc}") from None

    def stop(self) -> None:
        steps = self._plan(self.impairment)
        iptables_steps = [c for c in steps.teardown if c[0] in self.target.tables]
        for command in iptables_steps:
            kernel.run(command, may_fail=True)
        if self.queue is not None:
            self.queue.close()
        for command in steps.teardown:
            if command not in iptables_steps:
                kernel.run(command, may_fail=True)

    def _hook_packets(self) -> int:
        total = 0
        for builtin, chain, wanted in (("OUTPUT", planning.CHAIN_OUT, self.target.egress),
                                       ("INPUT", planning.CHAIN_IN, self.target.ingress)):
            if wanted:
                total += sum(p for program in self.target.tables
                             for p, target in chain_counters(program, builtin) if target == chain)
        return total

    def counters(self) -> dict[str, int | None]:
        queue = self.queue.counts if self.queue else {}
        _sent, rate_dropped = self._qdisc_totals()
        return {"seen": self._hook_packets(), "dropped": queue.get("dropped"),
                "queued": queue.get("seen"), "delayed": queue.get("delayed"),
                "duplicated": queue.get("duplicated"), "corrupted": queue.get("corrupted"),
                "reordered": queue.get("reordered"), "rate_dropped": rate_dropped,
                "held": self.queue.held if self.queue else None}

    def fileno(self) -> int | None:
        return self.queue.fileno() if self.queue else None

    def on_readable(self) -> None:
        assert self.queue is not None
        self.queue.on_readable()

    def next_deadline(self) -> float | None:
        return self.queue.next_deadline() if self.queue else None

    def on_timer(self) -> None:
        if self.queue is not None:
            self.queue.release_due()
