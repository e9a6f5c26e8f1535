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
        faults = _faults(events, self.after, self.target)
        if not faults:
            return self._no_data(f"no {'/'.join(self.after)} fault on {self.target}")
        records = list(q.select(events, "client", proto="tcp", services=self._services()))
        failures: dict[str, list[str]] = {}
        for fault in faults:
            t = q.parse_ts(fault["ts"])
            before = [r for r in records if q.parse_ts(r["ts"]) < t]
            after = [r for r in records if q.parse_ts(r["ts"]) >= t]
            for (client, session), ports in _open_sessions(before).items():
                failures.setdefault(client, [])
                if not any(r.get("event") == "connected" and q.who(r) == client and (r.get("session") or 0) == session
                           and q.client_address(r) not in ports for r in after):
                    failures[client].append(f"{client} s{session}: no new connection after t={fault.get('t')}s")
        if not failures:
            return self._no_data("no tcp client was connected when the fault happened")
        for client in failures:
            summary = [r for r in records if q.who(r) == client and r.get("event") == "summary"]
            if not summary:
                failures[client].append(f"{client}: no summary")
            elif summary[-1].get("ok") is not True:
                failures[client].append(f"{client}: {summary[-1].get('reason') or 'not ok'}")
        bad = [text for texts in failures.values() for text in texts]
        good = sum(1 for texts in failures.values() if not texts)
        return self._result(not bad, f"{good}/{len(failures)} clients reconnected ok", listed(bad), float(good))


def _open_sessions(records: list[Record]) -> dict[tuple[str, int], set[str]]:
    """(client, session) -> addresses it used, for TCP sessions not finished by the end of `records`.

    A `closed` for a drop (eof, reset, timeout) does not finish a session: the client reconnects.
    Only `done`/`interrupted` or the client's summary does.
    """
    used: dict[tuple[str, int], set[str]] = {}
    finished: set[tuple[str, int]] = set()
    done_clients: set[str] = set()
    for rec in records:
        key = (q.who(rec), rec.get("session") or 0)
        if rec.get("event") == "connected":
            used.setdefault(key, set()).add(q.client_address(rec))
        elif rec.get("event") == "closed" and rec.get("reason") in ("done", "interrupted"):
            finished.add(key)
        elif rec.get("event") == "summary":
            done_clients.add(q.who(rec))
    return {k: v for k, v in used.items() if k not in finished and k[0] not in done_clients}
