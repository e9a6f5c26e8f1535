"""What a scenario says must hold, checked on the run's records after the run.

A scenario's `expect:` is a list of `{check: <kind>, ...}` mappings (docs/scenario-expectations.md).
Each kind is a pydantic model with extra fields forbidden, so a typo is a clear error naming the
field; `evaluate` measures one value per expectation and never passes on missing data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator

from lab import metrics as m
from lab.expect_base import (
    Bounded,
    Check,
    Count,
    ExpectationResult,
    FaultAction,
    Fraction,
    Millis,
    Number,
    Proto,
    Scoped,
    listed,
    num,
    pct,
    range_text,
    within,
)
from lab.expect_server import (
    AcceptedInOrder,
    AcceptWaitGrows,
    Concurrency,
    DistinctPeers,
    DistinctPorts,
    ViewsAgree,
    unmatched_addresses,
)
from lab.metrics import Record

__all__ = ["Expectation", "ExpectationResult", "KINDS", "METRICS", "evaluate"]

# --- message checks ---------------------------------------------------------------------------

class EchoedIntact(Scoped):
    """Every message a client sent came back, byte for byte (the last try of each counts)."""

    check: Literal["echoed_intact"]

    def title(self) -> str:
        return f"every {self._scope()}message echoed intact{self._suffix()}"

    def expected(self) -> str:
        return "all intact"

    def evaluate(self, events):
        last: dict[tuple, m.Message] = {}
        for msg in m.client_messages(events, self.proto, self._services()):
            last[msg.key] = msg
        if not last:
            return self._no_data(f"no {self._scope()}client sent a message")
        bad = [f"{c} {p} s{s} #{q}: " + ("no reply" if msg.reply is None else "mismatched")
               for (c, p, s, q), msg in last.items() if not msg.intact]
        good = len(last) - len(bad)
        return self._result(not bad, f"{good}/{len(last)} intact", listed(bad), good / len(last))


class Loss(Scoped, Bounded):
    """Fraction of sends that got no reply (round trip: lost either way counts)."""

    check: Literal["loss"]
    proto: Proto = "udp"
    min: Fraction | None = None
    max: Fraction | None = None

    def title(self) -> str:
        return f"{self._scope()}loss {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(*self.bounds, pct)

    def evaluate(self, events):
        msgs = m.client_messages(events, self.proto, self._services())
        if not msgs:
            return self._no_data(f"no {self._scope()}client sent a message")
        lost = [msg for msg in msgs if msg.reply is None]
        frac = len(lost) / len(msgs)
        return self._result(within(frac, *self.bounds), f"{pct(frac)} ({len(lost)}/{len(msgs)} lost)",
                            value=frac)


class Rtt(Scoped):
    """A percentile of the clients' round-trip times, from their `reply` records."""

    check: Literal["rtt"]
    percentile: float = Field(50, ge=0, le=100)
    min_ms: Millis | None = None
    max_ms: Millis | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_ms is None and self.max_ms is None:
            raise ValueError("give at least one bound: 'min_ms' or 'max_ms'")
        if self.min_ms is not None and self.max_ms is not None and self.min_ms > self.max_ms:
            raise ValueError(f"'min_ms' ({self.min_ms}) is greater than 'max_ms' ({self.max_ms})")
        return self

    def title(self) -> str:
        return f"{self._scope()}rtt p{num(self.percentile)} {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(self.min_ms, self.max_ms, unit=" ms")

    def evaluate(self, events):
        rtts = m.reply_rtts(events, self.proto, self._services())
        if not rtts:
            return self._no_data(f"no {self._scope()}reply with rtt_ms")
        value = m.percentile(rtts, self.percentile)
        return self._result(within(value, self.min_ms, self.max_ms), f"{value:.2f} ms ({len(rtts)} replies)",
                            value=value)


# --- clients and faults -------------------------------------------------------------------------

def _faults(events: list[Record], actions: Sequence[str], target: str | None) -> list[Record]:
    """Faults that were really applied (a fault the engine refused has `ok: false`)."""
    return [r for r in m.select(events, "lab", "fault")
            if r.get("action") in actions and (target is None or r.get("target") == target)
            and r.get("ok", True) is True]


class ClientsOk(Scoped):
    """Every client printed a summary for each protocol it ran, and every summary is ok."""

    check: Literal["clients_ok"]
    min: Count = Field(1, description="At least this many clients")

    def title(self) -> str:
        return f"every {self._scope()}client finished ok{self._suffix()}"

    def expected(self) -> str:
        return f"all ok, at least {self.min} client{'s' if self.min != 1 else ''}"

    def evaluate(self, events):
        ran: dict[str, set[str]] = {}
        summaries: dict[tuple[str, str], Record] = {}
        for rec in m.select(events, "client", proto=self.proto, services=self._services()):
            ran.setdefault(m.who(rec), set())
            if rec.get("proto"):
                ran[m.who(rec)].add(rec["proto"])
            if rec.get("event") == "summary" and rec.get("proto"):
                summaries[(m.who(rec), rec["proto"])] = rec
        if not ran:
            return self._no_data(f"no {self._scope()}client record")
        bad = []
        for client, protos in sorted(ran.items()):
            for proto in sorted(protos) or ["any"]:
                summary = summaries.get((client, proto))
                if summary is None:
                    bad.append(f"{client} {proto}: no summary")
                elif summary.get("ok") is not True:
                    bad.append(f"{client} {proto}: {summary.get('reason') or 'not ok'}")
        failed = {b.split(" ", 1)[0] for b in bad}
        good = len(ran) - len(failed)
        return self._result(not bad and len(ran) >= self.min, f"{good}/{len(ran)} clients ok", listed(bad),
                            float(good))


class Fault(Check):
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
        records = m.select(events, "client", proto="tcp", services=self._services())
        failures: dict[str, list[str]] = {}
        for fault in faults:
            t = m.parse_ts(fault["ts"])
            before = [r for r in records if m.parse_ts(r["ts"]) < t]
            after = [r for r in records if m.parse_ts(r["ts"]) >= t]
            for (client, session), ports in _open_sessions(before).items():
                failures.setdefault(client, [])
                if not any(r.get("event") == "connected" and m.who(r) == client and (r.get("session") or 0) == session
                           and m.client_address(r) not in ports for r in after):
                    failures[client].append(f"{client} s{session}: no new connection after t={fault.get('t')}s")
        if not failures:
            return self._no_data("no tcp client was connected when the fault happened")
        for client in failures:
            summary = [r for r in records if m.who(r) == client and r.get("event") == "summary"]
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
        key = (m.who(rec), rec.get("session") or 0)
        if rec.get("event") == "connected":
            used.setdefault(key, set()).add(m.client_address(rec))
        elif rec.get("event") == "closed" and rec.get("reason") in ("done", "interrupted"):
            finished.add(key)
        elif rec.get("event") == "summary":
            done_clients.add(m.who(rec))
    return {k: v for k, v in used.items() if k not in finished and k[0] not in done_clients}


# --- the generic form: one named number within bounds -------------------------------------------

def _rtt(p: float):
    def measure(events, proto, services):
        rtts = m.reply_rtts(events, proto, services)
        return m.percentile(rtts, p) if rtts else None
    return measure


def _unmatched(events, proto, services):
    unmatched, total = unmatched_addresses(events, proto)
    return float(len(unmatched)) if total else None


def _count(role: str, event: str, clients_only: bool = True):
    def measure(events, proto, services):
        return float(len(m.select(events, role, event, proto, services if clients_only else None)))
    return measure


def _loss(events, proto, services):
    msgs = m.client_messages(events, proto, services)
    return sum(1 for x in msgs if x.reply is None) / len(msgs) if msgs else None


def _some(value: float) -> float | None:
    return value or None


# name -> (what it is, unit, measure(events, proto, services) -> value or None when there is no data)
METRICS = {
    "messages": ("client sends", "", lambda e, p, s: _some(len(m.client_messages(e, p, s)))),
    "loss": ("fraction of sends without a reply", "%", _loss),
    "rtt_p50_ms": ("median round-trip time", " ms", _rtt(50)),
    "rtt_p95_ms": ("95th percentile round-trip time", " ms", _rtt(95)),
    "rtt_max_ms": ("largest round-trip time", " ms", _rtt(100)),
    "client_sockets": ("client connected/bound records", "", lambda e, p, s: _some(len(m.client_sockets(e, p, s)))),
    "distinct_ports": ("distinct client addresses", "",
                       lambda e, p, s: _some(len({m.client_address(r) for r in m.client_sockets(e, p, s)}))),
    "distinct_peers": ("distinct peers the server saw", "",
                       lambda e, p, s: _some(len({(q, a) for q, a, _ in m.server_peers(e, p)}))),
    "connections": ("tcp connections the server accepted", "", _count("server", "accepted", False)),
    "concurrency": ("most tcp connections open at once", "",
                    lambda e, p, s: m.max_concurrent(m.server_connection_spans(e)) or None),
    "reconnects": ("client reconnect attempts", "", _count("client", "reconnect")),
    "timeouts": ("client timeouts", "", _count("client", "timeout")),
    "errors": ("error records from any program", "", lambda e, p, s: float(len(
        [r for r in e if r.get("event") == "error" and (p in (None, "any") or r.get("proto") == p)]))),
    "unmatched": ("addresses seen by only one side", "", _unmatched),
}
MetricName = Literal[tuple(METRICS)]  # type: ignore[valid-type]


class Metric(Scoped, Bounded):
    """Any number from METRICS within `min`/`max`; percentages like '5%' are accepted."""

    check: Literal["metric"]
    metric: MetricName
    min: Number | None = None
    max: Number | None = None
    equals: Number | None = None

    def _fmt(self, x: float) -> str:
        return pct(x) if METRICS[self.metric][1] == "%" else num(round(x, 3)) + METRICS[self.metric][1]

    def title(self) -> str:
        return f"{self._scope()}{self.metric} {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(*self.bounds, self._fmt)

    def evaluate(self, events):
        value = METRICS[self.metric][2](events, self.proto, self._services())
        if value is None:
            return self._no_data(f"nothing to measure {METRICS[self.metric][0]} from")
        return self._result(within(value, *self.bounds), self._fmt(value), value=float(value))


_KIND_MODELS = (EchoedIntact, Loss, Rtt, DistinctPorts, ViewsAgree, DistinctPeers, Concurrency, AcceptedInOrder,
                AcceptWaitGrows, ClientsOk, Fault, ReconnectedAfterFault, Metric)
KINDS = tuple(model.model_fields["check"].annotation.__args__[0] for model in _KIND_MODELS)



def _known_kind(value: Any) -> Any:
    """A clearer error than pydantic's for a missing or misspelt `check`."""
    if isinstance(value, dict):
        kind = value.get("check")
        if kind is None:
            raise ValueError(f"each expectation needs 'check': one of {', '.join(KINDS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown check {kind!r}: use one of {', '.join(KINDS)}")
    return value


Expectation = Annotated[
    Union[_KIND_MODELS],  # type: ignore[valid-type]  # noqa: UP007 - a Union over a tuple of types
    Field(discriminator="check"),
    BeforeValidator(_known_kind),
]


def evaluate(expectations: Sequence[Any], events: list[Record]) -> list[ExpectationResult]:
    """Check each expectation on a run's time-ordered records; one result each, in order."""
    return [exp.evaluate(events) for exp in expectations]
