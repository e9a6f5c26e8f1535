"""The host-level firewall rules a routed run needs, planned as commands (pure) and recognised
again afterwards, so that teardown and `lab clean` remove exactly what a run added.

Docker isolates `internal: true` networks in the host's FORWARD chain: a frame that a router
container forwards from one subnet to another still crosses one lab bridge, but its source or
destination lies outside that bridge's subnet, and Docker drops it. Docker keeps the
`DOCKER-USER` chain for rules of the host's own; the lab inserts one rule per bridge of the
run that accepts frames staying on that same bridge (`-i br -o br`), nothing that enters or
leaves it, so the lab's networks stay unreachable from outside. Each rule carries a comment
naming the run, which is how it is found again.

The commands run in a throwaway helper container on the host's network namespace with
NET_ADMIN only (`Engine.host_firewall`); the lab never calls the host's iptables itself.
`open_bridges`, `close_bridges` and `remove_stale` are the three things a run and `lab clean`
do with them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from lab.errors import EngineError

CHAIN = "DOCKER-USER"
_RULE = re.compile(r'^-A DOCKER-USER -i (?P<bridge>\S+) -o (?P=bridge) .*--comment "?socketlab (?P<mark>[^"]*)"?')


@dataclass(frozen=True)
class Mark:
    """Who made a rule: the run, the `host:pid` of the `lab run` driving it (so `lab clean`
    spares a living run's rules, as it spares its containers) and the test session, if any."""

    run: str
    owner: str = ""
    session: str = ""

    def comment(self) -> str:
        fields = {"run": self.run, "owner": self.owner, "session": self.session}
        return "socketlab " + " ".join(f"{k}={v}" for k, v in fields.items() if v)

    @classmethod
    def parse(cls, text: str) -> Mark | None:
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        return cls(fields["run"], fields.get("owner", ""), fields.get("session", "")) if "run" in fields else None


def rule(bridge: str, mark: Mark) -> list[str]:
    return ["-i", bridge, "-o", bridge, "-m", "comment", "--comment", mark.comment(), "-j", "ACCEPT"]


def add_script(bridges: list[str], mark: Mark) -> str:
    """Shell for the helper: insert the accept rule of every bridge, for IPv4, and for IPv6
    where the engine filters IPv6 too (its ip6tables has the chain)."""
    return _script(bridges, mark, "-I")


def remove_script(bridges: list[str], mark: Mark) -> str:
    """Shell for the helper: delete those rules, every copy, whichever exist."""
    return _script(bridges, mark, "-D")


def _script(bridges: list[str], mark: Mark, op: str) -> str:
    lines = ["status=0"]
    for tool in ("iptables", "ip6tables"):
        guard = f"{tool} -w -n -L {CHAIN} >/dev/null 2>&1"
        for bridge in bridges:
            args = shlex.join([tool, "-w", op, CHAIN, *rule(bridge, mark)])
            if op == "-I":
                lines.append(f"if {guard}; then {args} || status=1; fi")
            else:
                lines.append(f"if {guard}; then while {args} 2>/dev/null; do :; done; fi")
    lines.append("exit $status")
    return "\n".join(lines)


LIST_SCRIPT = f"iptables -w -S {CHAIN} && {{ ip6tables -w -S {CHAIN} 2>/dev/null || true; }}"


def parse_rules(listing: str) -> dict[Mark, set[str]]:
    """The lab's rules in `iptables -S DOCKER-USER` output: who made them -> bridges."""
    found: dict[Mark, set[str]] = {}
    for line in listing.splitlines():
        match = _RULE.match(line.strip())
        mark = Mark.parse(match.group("mark")) if match else None
        if mark:
            found.setdefault(mark, set()).add(match.group("bridge"))
    return found


def open_bridges(engine, image: str, bridges: list[str], mark: Mark) -> None:
    """Accept the run's routed frames on its own bridges; EngineError when the host refuses."""
    status, output = engine.host_firewall(image, add_script(bridges, mark))
    if status != 0:
        raise EngineError(f"cannot add the run's {CHAIN} rules on the host (`lab doctor` checks this): "
                          f"{output.strip() or f'status {status}'}")


def close_bridges(engine, image: str, bridges: list[str], mark: Mark) -> None:
    status, output = engine.host_firewall(image, remove_script(bridges, mark))
    if status != 0:
        raise EngineError(f"removing the run's {CHAIN} rules: {output.strip() or f'status {status}'}")


def list_rules(engine, image: str) -> dict[Mark, set[str]]:
    """The lab's rules on the host now; EngineError when the host does not let the lab look."""
    status, output = engine.host_firewall(image, LIST_SCRIPT)
    if status != 0:
        raise EngineError(f"reading the host's {CHAIN} chain: {output.strip() or f'status {status}'}")
    return parse_rules(output)


def remove_stale(engine, image: str, keep) -> list[str]:
    """Remove the rules of every run for which `keep(mark)` is false; what was removed."""
    removed = []
    for mark, bridges in sorted(list_rules(engine, image).items(), key=lambda item: item[0].run):
        if not keep(mark):
            close_bridges(engine, image, sorted(bridges), mark)
            removed += [f"{CHAIN} rule for {bridge} (run {mark.run})" for bridge in sorted(bridges)]
    return removed
