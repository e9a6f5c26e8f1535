"""Talking to the kernel's tools: one wrapper for tc/ip/iptables, and `probe` of what works here.

Every probe tries the real thing in the current network namespace and removes what it made,
so the answer is about this kernel and these privileges, not about what is installed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import TypeVar

from lab.shaper import netlink

PROBE_CHAIN = "LAB-SHAPER-PROBE"
PROBE_DEV = "shp-probe"
PROBE_QUEUE = 65001
T = TypeVar("T")


class ShaperError(Exception):
    """A command the shaper needs failed; the message names the command and its error."""


def run(command: list[str], may_fail: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one command; raise ShaperError with its stderr unless `may_fail`."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if may_fail:
            return subprocess.CompletedProcess(command, 127, "", str(exc))
        raise ShaperError(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0 and not may_fail:
        message = (done.stderr or done.stdout).strip().replace("\n", " ")
        raise ShaperError(f"{' '.join(command)}: {message or f'exit {done.returncode}'}")
    return done


def is_removal(command: list[str]) -> bool:
    """Deleting what is not there is fine: `tc qdisc del`, `iptables -D/-F/-X`, `ip link del`."""
    return any(word in command for word in ("del", "-D", "-X")) or command[-2:-1] == ["-F"]


def pick_iptables() -> str | None:
    """The first iptables variant that can list the filter table here (nft first, as Debian)."""
    for name in ("iptables", "iptables-legacy"):
        if run([name, "-w", "-S", "OUTPUT"], may_fail=True).returncode == 0:
            return name
    return None


def first_error(done: subprocess.CompletedProcess[str]) -> str | None:
    """None for success, else the first line the command printed (or its exit status)."""
    if done.returncode == 0:
        return None
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[0] if text else f"exit {done.returncode}"


def _try_qdisc(dev: str, kind: list[str]) -> str | None:
    """None if the qdisc can be made on dev (and is then removed), else tc's message."""
    error = first_error(run(["tc", "qdisc", "add", "dev", dev, "root", *kind], may_fail=True))
    if error is None:
        run(["tc", "qdisc", "del", "dev", dev, "root"], may_fail=True)
    return error


def probe_netem(dev: str = "lo") -> str | None:
    """None if netem works here, else tc's message (e.g. 'Specified qdisc kind is unknown.')."""
    return _with_probe_device(dev, lambda d: _try_qdisc(d, ["netem", "delay", "1ms"]))


def _with_probe_device(dev: str, check: Callable[[str], T]) -> T:
    """Run check on a throwaway ifb (so no real device is touched), else on dev."""
    made = run(["ip", "link", "add", PROBE_DEV, "type", "ifb"], may_fail=True).returncode == 0
    try:
        return check(PROBE_DEV if made else dev)
    finally:
        if made:
            run(["ip", "link", "del", PROBE_DEV], may_fail=True)


def probe(dev: str = "lo") -> dict[str, object]:
    """What this kernel supports, each by trying it; the keys of `python3 -m lab.shaper probe`."""
    netem_error, tbf_error, ifb = _with_probe_device(dev, lambda where: (
        _try_qdisc(where, ["netem", "delay", "1ms"]),
        _try_qdisc(where, ["tbf", "rate", "1mbit", "burst", "3200", "limit", "10000"]),
        where == PROBE_DEV))
    result: dict[str, object] = {"netem": netem_error is None, "netem_error": netem_error,
                                 "tbf": tbf_error is None, "ifb": ifb}
    iptables = pick_iptables()
    result["iptables"] = iptables
    result["statistic"] = False
    nfqueue_rule = False
    if iptables:
        ipt = [iptables, "-w"]
        if run(ipt + ["-N", PROBE_CHAIN], may_fail=True).returncode == 0:
            result["statistic"] = run(ipt + ["-A", PROBE_CHAIN, "-m", "statistic", "--mode", "random",
                                             "--probability", "0.5", "-j", "DROP"], may_fail=True).returncode == 0
            nfqueue_rule = run(ipt + ["-A", PROBE_CHAIN, "-j", "NFQUEUE", "--queue-num", str(PROBE_QUEUE),
                                      "--queue-bypass"], may_fail=True).returncode == 0
            run(ipt + ["-F", PROBE_CHAIN], may_fail=True)
            run(ipt + ["-X", PROBE_CHAIN], may_fail=True)
    try:
        netlink.QueueSocket(PROBE_QUEUE, rcvbuf=1 << 16).close()
        bound = True
    except OSError:
        bound = False
    result["nfqueue"] = bound and nfqueue_rule
    result["backend"] = "netem" if result["netem"] else "userspace"
    return result
