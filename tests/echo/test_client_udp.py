"""The echo client over UDP against in-test servers that echo, drop, delay, repeat and alter."""

from __future__ import annotations

import pytest
from client_fakes import UdpEcho, events, run_client, summary

from lab.records.schema import format_addr

FAST = ("--interval", "0", "--proto", "udp")


def drop_numbers(*numbers: int):
    """A server policy: ignore the datagrams with these arrival numbers, echo the rest."""
    return lambda n, data: [] if n in numbers else [data]


def test_default_messages_and_bound_port_matches_server_view(capsys):
    with UdpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--timeout", "2", *FAST)
    assert code == 0
    (bound,) = events(records, "bound")
    assert bound["local"].startswith("0.0.0.0:")  # getsockname() of an unconnected socket
    assert bound["local_route"] == format_addr(server.peers[0])
    assert {format_addr(p) for p in server.peers} == {bound["local_route"]}
    replies = events(records, "reply")
    assert [r["seq"] for r in replies] == [1, 2, 3, 4] and all(r["intact"] for r in replies)
    assert "reads" not in replies[0]
    total = summary(records, "udp")
    assert total["ok"] and (total["sent"], total["echoed"], total["lost"]) == (4, 4, 0)
    assert total["local_ports"] == [server.peers[0][1]]


def test_retry_recovers_a_dropped_datagram(capsys):
    with UdpEcho(policy=drop_numbers(2)) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--count", "3", "--timeout", "0.5",
                                   "--retries", "2", *FAST)
    assert code == 0
    assert (2, 1) in {(r["seq"], r["attempt"]) for r in events(records, "timeout")}
    resent = [r for r in events(records, "sent") if r["seq"] == 2]
    assert [r.get("attempt") for r in resent][:2] == [None, 2]
    assert len(server.datagrams) >= 4
    total = summary(records, "udp")
    assert (total["sent"], total["echoed"], total["lost"], total["ok"]) == (3, 3, 0, True)


@pytest.mark.parametrize("max_loss, expected_code", [("0", 1), ("0.3", 0), ("0.2", 1)])
def test_loss_without_retries_is_judged_by_max_loss(capsys, max_loss, expected_code):
    with UdpEcho(policy=drop_numbers(2)) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--count", "4", "--timeout", "0.5",
                                   "--retries", "0", "--max-loss", max_loss, *FAST)
    assert code == expected_code
    total = summary(records, "udp")
    assert (total["sent"], total["echoed"], total["lost"]) == (4, 3, 1)
    assert total["ok"] is (expected_code == 0)
    if expected_code:
        assert "1 of 4 messages lost" in total["reason"]


def test_late_echo_of_an_earlier_message_is_not_counted_as_the_current_one(capsys):
    held: list[bytes] = []

    def late_first(n: int, data: bytes) -> list[bytes]:
        if n == 1:
            held.append(data)  # answered only together with message 2, after the client gave up
            return []
        return held + [data]

    with UdpEcho(policy=late_first) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "first", "--message", "second",
                                   "--timeout", "0.3", "--retries", "0", *FAST)
    assert code == 1
    (late,) = events(records, "duplicate")
    assert (late["seq"], late["reason"]) == (1, "late")
    (reply,) = events(records, "reply")
    assert reply["seq"] == 2 and reply["intact"]
    total = summary(records, "udp")
    assert (total["echoed"], total["lost"], total["mismatched"]) == (1, 1, 0)


def test_duplicated_echoes_are_logged_not_counted(capsys):
    with UdpEcho(policy=lambda n, data: [data, data]) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "a", "--message", "b",
                                   "--message", "c", "--timeout", "1", *FAST)
    assert code == 0
    duplicates = events(records, "duplicate")
    assert {r["reason"] for r in duplicates} == {"duplicate"}
    assert {r["seq"] for r in duplicates} <= {1, 2} and duplicates
    assert summary(records, "udp")["echoed"] == 3


def test_stray_datagram_from_another_address_is_ignored(capsys):
    with UdpEcho(stray_first=True) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "x", "--timeout", "1", *FAST)
    assert code == 0
    (stray,) = events(records, "error")
    assert stray["reason"] == "stray" and stray["peer"] != f"127.0.0.1:{server.port}"
    assert summary(records, "udp")["echoed"] == 1


def test_altered_datagram_is_a_mismatch(capsys):
    with UdpEcho(policy=lambda n, data: [data[::-1]]) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "abc", "--timeout", "1", *FAST)
    assert code == 1
    (reply,) = events(records, "reply")
    assert reply["intact"] is False and reply["text"] == "cba"
    total = summary(records, "udp")
    assert total["mismatched"] == 1 and "not intact" in total["reason"]


def test_twenty_sessions_use_twenty_ports_the_server_saw(capsys):
    with UdpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--sessions", "20", "--count", "2",
                                   "--timeout", "2", *FAST)
    assert code == 0
    bound = events(records, "bound")
    routes = {r["local_route"] for r in bound}
    assert len(routes) == 20 and routes == {format_addr(p) for p in server.peers}
    total = summary(records, "udp")
    assert total["echoed"] == 40 and len(set(total["local_ports"])) == 20


def test_sessions_keep_their_sockets_until_the_last_is_over_so_no_port_is_handed_on(capsys):
    """A session that ends early frees its port for one that starts late: the sessions close
    together (closing a UDP socket sends nothing). Here one session's first datagram is dropped,
    so it ends a retry later than the other."""
    with UdpEcho(policy=drop_numbers(1)) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--sessions", "2", "--count", "1",
                                   "--timeout", "0.3", "--retries", "1", *FAST)
    assert code == 0
    kinds = [r["event"] for r in records if r.get("proto") == "udp"]
    last_reply = max(i for i, kind in enumerate(kinds) if kind == "reply")
    closed = [i for i, kind in enumerate(kinds) if kind == "closed"]
    assert len(closed) == 2 and min(closed) > last_reply  # neither closed while the other still talked
    assert len(set(summary(records, "udp")["local_ports"])) == 2


def test_first_datagram_is_resent_while_connect_timeout_lasts(capsys):
    # a server that is "not up yet" for the first three datagrams
    with UdpEcho(policy=drop_numbers(1, 2, 3)) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "hello", "--timeout", "0.1",
                                   "--retries", "0", "--connect-timeout", "5", *FAST)
    assert code == 0
    attempts = [r["attempt"] for r in events(records, "timeout")]
    assert attempts[:3] == [1, 2, 3] and attempts == list(range(1, len(attempts) + 1))
    assert summary(records, "udp")["echoed"] == 1 and len(server.datagrams) >= 4



def test_cycled_messages_are_unique_so_a_late_echo_is_not_a_later_reply(capsys):
    # --count 4 over two messages sends "a", "b", "#3 a", "#4 b". The echo of "a" is held back
    # until "#3 a" arrives: it is message 1's late echo, not message 3's reply.
    held: list[bytes] = []

    def late_first(n: int, data: bytes) -> list[bytes]:
        if n == 1:
            held.append(data)
            return []
        if data.startswith(b"#3 "):
            return held + [data]
        return [data]

    with UdpEcho(policy=late_first) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "a", "--message", "b",
                                   "--count", "4", "--timeout", "0.3", "--retries", "0", *FAST)
        assert server.datagrams == [b"a", b"b", b"#3 a", b"#4 b"]
    assert [r["text"] for r in events(records, "sent")] == ["a", "b", "#3 a", "#4 b"]
    (late,) = events(records, "duplicate")
    assert (late["seq"], late["reason"]) == (1, "late")
    assert [r["seq"] for r in events(records, "reply")] == [2, 3, 4]
    assert all(r["intact"] for r in events(records, "reply"))
    total = summary(records, "udp")
    assert (code, total["echoed"], total["lost"], total["mismatched"]) == (1, 3, 1, 0)


def test_messages_within_the_list_keep_their_tutorial_text(capsys):
    with UdpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "a", "--message", "b",
                                   "--count", "2", *FAST)
        assert server.datagrams == [b"a", b"b"]
    assert code == 0
