"""The echo client over IPv6 loopback, TCP and UDP alike: its own view of the conversation
(the address it logs) must be the address the server saw, so the orchestrator can join them."""

from __future__ import annotations

import pytest
from client_fakes import TcpEcho, UdpEcho, events, run_client

from lab.records.schema import format_addr


@pytest.mark.parametrize("proto, fake, event, own_address", [
    ("tcp", TcpEcho, "connected", "local"),  # getsockname() of the connected socket
    ("udp", UdpEcho, "bound", "local_route"),  # unconnected: the route's source plus the bound port
])
def test_client_address_on_ipv6_loopback_is_what_the_server_saw(capsys, proto, fake, event, own_address):
    try:
        server = fake(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    with server:
        code, records = run_client(capsys, "--server", "::1", "--port", str(server.port), "--message", "v6",
                                   "--proto", proto, "--interval", "0", "--timeout", "2")
    assert code == 0
    (opened,) = events(records, event)
    assert opened[own_address].startswith("[::1]:")
    assert opened[own_address] == format_addr(server.peers[0][:2])
