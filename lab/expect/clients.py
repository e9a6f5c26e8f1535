"""Expectations on the clients as programs and on the faults: did every client finish ok, did a
fault really happen, did the clients come back after it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from lab.expect import query as q
from lab.expect.base import BaseExpectation, Count, Scoped, listed
from lab.expect.query import Record
from lab.fault_actions import FaultAction


def _faults(events: list[Record], actions: Sequence[str], target: str | None) -> list[Record]:
    """Faults that were really applied (a fault the engine refused has `ok: false`)."""
    return [r for r in q.select(events, "lab", "fault")
            if r.get("action") in actions and (target is None or r.get("target") == target)
            and r.get("ok", True) is True]


class ClientsOk(Scoped):
    """Every client printed a summary for each protocol it ran, and every summary is ok (a
    dual-stack client prints one per protocol and server address: each must be ok)."""

    check: Literal["clients_ok"]
    min: Count = Field(1, description="At least this many clients")

    def title(self) -> str:
        return f"every {self._scope()}client finished ok{self._suffix()}"

    def expected(self) -> str:
        return f"all ok, at least {self.min} client{'s' if self.min != 1 else ''}"

    def evaluate(self, events):
        ran: dict[str, set[str]] = {}
        summaries: dict[tuple[str, str], list[Record]] = {}
        for rec in q.select(events, "client", proto=self.proto, services=self._services()):
            ran.setdefault(q.who(rec), set())
            if rec.get("proto"):
                ran[q.who(rec)].add(rec["proto"])
            if rec.get("event") == "summary" and rec.get("proto"):
                summaries.setdefault((q.who(rec), rec["proto"]), []).append(rec)
        if not ran:
            return self._no_data(f"no {self._scope()}client record")
        bad = []
        for client, protos in sorted(ran.items()):
            for proto in sorted(protos) or ["any"]:
                found = summaries.get((client, proto))
                if not found:
                    bad.append(f"{client} {proto}: no summary")
                several = len(found or []) > 1
                for summary in found or []:
                    if summary.get("ok") is not True:
                        to = f" {summary.get('family') or summary.get('server')}" if several else ""
                        bad.append(f"{client} {proto}{to}: {summary.get('reason') or 'not ok'}")
        failed = {b.split(" ", 1)[0] for b in bad}
        good = len(ran) - len(failed)
        return self._result(not bad and len(ran) >= self.min, f"{good}/{len(ran)} clients ok", listed(bad),
                            float(good))


class FaultHappened(BaseExpectation):
    """The orchestrator really applied a fault (e.g. the server was restarted)."""

    check: Literal["fault"]
    action: FaultAction
    target: str | None = Field(None, description="Service the fault hit; any if omitted")
    min: Count = 1

    def title(self) -> str:
        on = f" on {self.target}" if self.target else ""
        article = "an" if self.action[0] in "aeiou" else "a"
        return f"{article} {self.action} fault{on} happened"

    def expected(self) -> str:
        return f"at least {self.min}"

    def evaluate(self, events):
        found = _faults(events, [self.action], self.target)
        when = ", ".join(f"t={r['t']}s" for r in found if r.get("t") is not None)
        return self._result(len(found) >= self.min, f"{len(found)} {self.action} fault(s)", when, float(len(found)))


class ReconnectedAfterFault(Scoped):
    """Every TCP session open at a server fault connected again from a new port and ended ok."""

    check: Literal["reconnected_after_fault"]
    proto: Literal["tcp"] = "tcp"
    after: tuple[FaultAction, ...] = ("restart", "stop", "kill")
    target: str = "server"

    @field_validator("after", mode="before")
    @classmethod
    def _one_action_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def title(self) -> str:
        return f"every tcp client reconnected after {'/'.join(self.after)} of {self.target}{self._suffix()}"

    def expected(self) -> str:
        return "all reconnected from a new port and ok"

    def evaluate(self, events):
        """In one pass over the TCP client records (after one for the faults): what each client
        session had open at each fault is noted when the records reach the fault's time, then
        whether it connected again from another address; held: the sessions and their addresses,
        and each client's last summary, never the records."""
        faults = _faults(events, self.after, self.target)
        if not faults:
            return self._no_data(f"no {'/'.join(self.after)} fault on {self.target}")
        times = [q.parse_ts(fault["ts"]) for fault in faults]
        sessions = _Sessions()
        open_at: list[dict[tuple[str, int], set[str]] | None] = [None] * len(faults)  # per fault, once reached
        back: list[set[tuple[str, int]]] = [set() for _ in faults]  # the sessions that connected again since
        summaries: dict[str, Record] = {}
        for rec in q.select(events, "client", proto="tcp", services=self._services()):
            ts = q.parse_ts(rec["ts"])
            for i, t in enumerate(times):
                if ts < t:
                    continue
                if open_at[i] is None:  # the first record at or after the fault: the ones before made the state
                    open_at[i] = sessions.open()
                if rec.get("event") == "connected":
                    key = (q.who(rec), rec.get("session") or 0)
                    ports = open_at[i].get(key)  # type: ignore[union-attr]
                    if ports is not None and q.client_address(rec) not in ports:
                        back[i].add(key)
            sessions.add(rec)
            if rec.get("event") == "summary":
                summaries[q.who(rec)] = rec
        failures: dict[str, list[str]] = {}
        for i, fault in enumerate(faults):
            for (client, session), _ports in (open_at[i] if open_at[i] is not None else sessions.open()).items():
                failures.setdefault(client, [])
                if (client, session) not in back[i]:
                    failures[client].append(f"{client} s{session}: no new connection after t={fault.get('t')}s")
        if not failures:
            return self._no_data("no tcp client was connected when the fault happened")
        for client in failures:
            summary = summaries.get(client)
            if summary is None:
                failures[client].append(f"{client}: no summary")
            elif summary.get("ok") is not True:
                failures[client].append(f"{client}: {summary.get('reason') or 'not ok'}")
        bad = [text for texts in failures.values() for text in texts]
        good = sum(1 for texts in failures.values() if not texts)
        return self._result(not bad, f"{good}/{len(failures)} clients reconnected ok", listed(bad), float(good))


class _Sessions:
    """The TCP client sessions seen so far, as the records go by: the addresses each used, which
    finished (`done`/`interrupted`, not a drop: the client reconnects after eof, reset, timeout)
    and which clients printed their summary. Grows with the connections, not the messages."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, int], set[str]] = {}
        self.finished: set[tuple[str, int]] = set()
        self.done_clients: set[str] = set()

    def add(self, rec: Record) -> None:
        key = (q.who(rec), rec.get("session") or 0)
        if rec.get("event") == "connected":
            self.used.setdefault(key, set()).add(q.client_address(rec))
        elif rec.get("event") == "closed" and rec.get("reason") in ("done", "interrupted"):
            self.finished.add(key)
        elif rec.get("event") == "summary":
            self.done_clients.add(q.who(rec))

    def open(self) -> dict[tuple[str, int], set[str]]:
        """(client, session) -> the addresses it used, for the sessions not finished so far."""
        return {k: set(v) for k, v in self.used.items() if k not in self.finished and k[0] not in self.done_clients}
