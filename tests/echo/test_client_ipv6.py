"""The echo client over IPv6 loopback, TCP and UDP alike: its own view of the conversation
(the address it logs) must be the address the server saw, so the orchestrator can join them."""

from __future__ import annotations

import pytest
from client_fakes import TcpEcho, UdpEcho, events, run_client

from lab.echo import client
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


@pytest.mark.parametrize("proto, fake, event, own_address", [
    ("tcp", TcpEcho, "connected", "local"),
    ("udp", UdpEcho, "bound", "local_route"),
])
def test_a_client_given_both_families_talks_over_each_in_turn(capsys, proto, fake, event, own_address):
    """`--server 127.0.0.1,::1` to one dual-stack socket: one conversation per address, each
    with its own address and its own summary naming the server and family."""
    try:
        server = fake(host="::")
    except OSError:
        pytest.skip("no IPv6 on this host")
    with server:
        code, records = run_client(capsys, "--server", "127.0.0.1,::1", "--port", str(server.port),
                                   "--message", "both", "--proto", proto, "--interval", "0", "--timeout", "2")
    assert code == 0
    opened = events(records, event)
    assert [o["peer"] for o in opened] == [f"127.0.0.1:{server.port}", f"[::1]:{server.port}"]
    assert [o[own_address].split("]")[0] if o[own_address].startswith("[") else o[own_address].split(":")[0]
            for o in opened] == ["127.0.0.1", "[::1"]
    summaries = events(records, "summary", proto)
    assert [(s["server"], s["family"], s["ok"], s["echoed"]) for s in summaries] == [
        ("127.0.0.1", "ipv4", True, 1), ("::1", "ipv6", True, 1)]
    # the server saw both: the IPv4 one from its IPv4-mapped address
    assert len({peer[0] for peer in server.peers}) == 2


def test_a_failing_family_fails_the_client_and_says_which(capsys):
    """The IPv4 address has no server (refused): the IPv6 conversation still runs, the client exits 1."""
    try:
        server = TcpEcho(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    with server:
        code, records = run_client(capsys, "--server", "127.0.0.1,::1", "--port", str(server.port),
                                   "--message", "x", "--proto", "tcp", "--interval", "0", "--timeout", "1")
    assert code == 1
    assert [(s["family"], s["ok"]) for s in events(records, "summary", "tcp")] == [("ipv4", False), ("ipv6", True)]



@pytest.mark.parametrize("value, message", [
    ("127.0.0.1,", "--server: an empty host"),
    ("::1,::1", "--server: each address once"),
])
def test_bad_server_lists_are_refused_naming_the_option(value, message):
    args = client.build_parser().parse_args(["--server", value])
    with pytest.raises(client.OptionError, match=message):
        client.plan_from_args(args)
