"""What a scenario says must hold, checked on the run's records after the run.

A scenario's `expect:` is a list of `{check: <kind>, ...}` mappings (docs/scenario-expectations.md).
Each kind is a pydantic model with extra fields forbidden, so a typo is a clear error naming the
field; `evaluate` measures one value per expectation and never passes on missing data.

The modules name what they check:

- `messages`: echoed_intact, loss, rtt
- `clients`: clients_ok, fault, reconnected_after_fault
- `server`: the server's view against the clients' (distinct_ports, views_agree, distinct_peers,
  concurrency, accepted_in_order, accept_wait_grows)
- `programs`: diagnosed (the lab explained a learner's program)
- `metrics`: every measured number, computed once, and the generic `metric` kind over them
- `wire`: the capture's view (retransmissions, lost_where, handshake_ms)
- `base`: what every kind is built from; `query`: questions asked of the records

To add a kind: write one `BaseExpectation` subclass (usually `Scoped`) with a
`check: Literal["<kind>"]` field, in the module that names what it checks or a new one, and add
it to `KIND_MODELS` below. That is the only registration; validation, `KINDS` and the error for
an unknown kind follow from it. Document it in docs/scenario-expectations.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field

from lab.expect.base import BaseExpectation, ExpectationResult
from lab.expect.clients import ClientsOk, FaultHappened, ReconnectedAfterFault
from lab.expect.messages import EchoedIntact, Loss, Rtt
from lab.expect.metrics import METRICS, Metric
from lab.expect.programs import Diagnosed
from lab.expect.query import (
    Message,
    Record,
    client_address,
    client_messages,
    normal_addr,
    percentile,
    port_of,
    select,
    server_peers,
    who,
)
from lab.expect.server import (
    AcceptedInOrder,
    AcceptWaitGrows,
    Concurrency,
    DistinctPeers,
    DistinctPorts,
    ViewsAgree,
)
from lab.expect.wire import HandshakeMs, LostWhere, Retransmissions

__all__ = [
    "KINDS", "KIND_MODELS", "METRICS", "BaseExpectation", "Expectation", "ExpectationResult", "Message", "Record",
    "client_address", "client_messages", "evaluate", "normal_addr", "percentile", "port_of", "select",
    "server_peers", "who",
]

# The registry: every kind a scenario may name, in the order the docs list them.
KIND_MODELS: tuple[type[BaseExpectation], ...] = (
    EchoedIntact, Loss, Rtt, DistinctPorts, ViewsAgree, DistinctPeers, Concurrency, AcceptedInOrder,
    AcceptWaitGrows, ClientsOk, FaultHappened, ReconnectedAfterFault, Diagnosed, Metric, Retransmissions, LostWhere,
    HandshakeMs,
)
KINDS = tuple(model.model_fields["check"].annotation.__args__[0] for model in KIND_MODELS)


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
    Union[KIND_MODELS],  # type: ignore[valid-type]  # noqa: UP007 - a Union over a tuple of types
    Field(discriminator="check"),
    BeforeValidator(_known_kind),
]


def evaluate(expectations: Sequence[Any], events: list[Record]) -> list[ExpectationResult]:
    """Check each expectation on a run's time-ordered records; one result each, in order."""
    return [exp.evaluate(events) for exp in expectations]
