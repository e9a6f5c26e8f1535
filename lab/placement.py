"""Where a scenario's hosts run when the engine has several nodes: the `placement:` field.

Only a multi-node engine (a swarm) places anything: the server on a named node, on the first
node (the default) or wherever the swarm likes (`any`); the clients spread over the other nodes
(the default), all on one named node, or each on its own (unlisted clients are spread). Docker on
one host ignores it. The renderer carries it to the engine as a label on each service
(`PLACEMENT_LABEL`); the swarm engine checks the named nodes exist before it deploys anything.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from lab.labels import PLACE_ANYWHERE

SPREAD = "spread"
# A node's hostname (RFC 1123 labels): what `lab cluster` names node1..N and a swarm reports.
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
SERVER_ALLOWED = f"a node's hostname (e.g. node1) or {PLACE_ANYWHERE}"
CLIENTS_ALLOWED = (f"{SPREAD}, a node's hostname (e.g. node2) for all clients, "
                   "or a mapping of client to node (e.g. {client1: node2, client2: node3})")


def is_node_name(value: object) -> bool:
    return isinstance(value, str) and value not in (SPREAD, PLACE_ANYWHERE) and bool(HOSTNAME.match(value))


class Placement(BaseModel):
    """`placement: {server: node1, clients: spread}`; every part optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str | None = Field(default=None, description=f"{SERVER_ALLOWED}; default the first node")
    clients: str | dict[str, str] = Field(default=SPREAD, description=CLIENTS_ALLOWED)

    @field_validator("server", mode="before")
    @classmethod
    def _server(cls, value: object) -> object:
        if value is not None and value != PLACE_ANYWHERE and not is_node_name(value):
            raise ValueError(SERVER_ALLOWED)
        return value

    @field_validator("clients", mode="before")
    @classmethod
    def _clients(cls, value: object) -> object:
        if isinstance(value, dict):
            if not value:
                raise ValueError(f"an empty mapping places no client: give {CLIENTS_ALLOWED}")
            for client, node in value.items():
                if not is_node_name(node):
                    # describe_errors (lab/scenario.py) puts `field` into the error's place.
                    raise PydanticCustomError("field", "{message}", {
                        "field": str(client), "message": f"a node's hostname (e.g. node2) (got {node!r})"})
            return value
        if value != SPREAD and not is_node_name(value):
            raise ValueError(CLIENTS_ALLOWED)
        return value

    def node_of_client(self, client: str) -> str | None:
        """The node a client is pinned to, or None when it is spread."""
        if isinstance(self.clients, dict):
            return self.clients.get(client)
        return None if self.clients == SPREAD else self.clients

    def named_nodes(self) -> dict[str, str]:
        """Field path -> node, for every node the placement names (to check against a swarm's)."""
        named = {"placement.server": self.server} if is_node_name(self.server) else {}
        if isinstance(self.clients, dict):
            named.update({f"placement.clients.{c}": n for c, n in self.clients.items()})
        elif self.clients != SPREAD:
            named["placement.clients"] = self.clients
        return named
