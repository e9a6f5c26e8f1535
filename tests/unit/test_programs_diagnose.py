"""Diagnoses and derived views from recorded socket tables, socket calls and wire flows."""

from __future__ import annotations

from lab.programs.diagnose import diagnose
from lab.programs.views import derive_views


def sock(host, event, proto="tcp", ts="2026-11-25T10:00:00.000000Z", **fields):
    return {"v": 1, "ts": ts, "host": host, "role": "sockets", "proto": proto, "event": event, **fields}


def call(host, call, address, proto="tcp", ts="2026-11-25T10:00:00.000000Z"):
    return {"v": 1, "ts": ts, "host": host, "role": "program", "proto": proto, "event": "socket",
            "call": call, "address": address}


def printed(host, text, ts="2026-11-25T10:00:01.000000Z", ip=None):
    record = {"v": 1, "ts": ts, "host": host, "role": "program", "proto": None, "event": "output",
              "stream": "stdout", "text": text}
    return {**record, "ip": ip} if ip else record


def kinds(found):
    return [(d.kind, d.host, d.socket) for d in found]


def test_the_tutorial_as_written_gets_both_loopback_diagnoses_with_fixes():
    records = [
        sock("server", "listen", local="127.0.0.11:40207", queued=0),  # Docker's DNS, in every container
        sock("server", "listen", local="127.0.0.1:19200", queued=0),
        call("server", "bind", "127.0.0.1:19200"),
        call("client1", "connect", "127.0.0.1:19200"),
        call("client2", "sendto", "127.0.0.1:19200", proto="udp"),
    ]
    found = diagnose(records)
    assert kinds(found) == [
        ("client-to-loopback", "client1", "127.0.0.1:19200"),
        ("client-to-loopback", "client2", "127.0.0.1:19200"),
        ("loopback-listener", "server", "127.0.0.1:19200"),
    ]
    assert "bind to '' or '0.0.0.0'" in found[2].text and "own container" in found[0].text
    assert "'server'" in found[0].text


def test_a_wildcard_listener_beside_a_loopback_one_is_fine():
    records = [sock("server", "listen", local="127.0.0.1:19200"), sock("server", "listen", local="0.0.0.0:19200")]
    assert diagnose(records) == []


def test_nothing_listening_on_the_port_the_clients_use_names_what_is_there():
    records = [sock("server", "listen", local="0.0.0.0:8080"), call("client1", "connect", "server:19200")]
    (found,) = diagnose(records)
    assert (found.kind, found.socket) == ("nothing-listening", "tcp/19200")
    assert "tcp/8080" in found.text and "client1" in found.text


def test_a_refused_connection_on_the_wire():
    wire = {"flows": [{"proto": "tcp", "client": "10.0.0.5:40000", "server": "10.0.0.2:19200",
                       "owner": None, "tcp": {"synack_ts": None, "rst": {"c2s": None, "s2c": "2026-11-25T10:00:00.1Z"}}}]}
    (found,) = diagnose([], wire, clients_by_address={"10.0.0.5:40000": "client4"})
    assert (found.kind, found.host) == ("connection-refused", "client4") and "RST" in found.text


def test_an_iterative_server_keeping_clients_in_the_listen_queue():
    records = [
        sock("server", "listen", local="0.0.0.0:19200", queued=0),
        sock("server", "open", local="10.0.0.2:19200", peer="10.0.0.5:40000", owned=False, ts="2026-11-25T10:00:00.000000Z"),
        sock("server", "owned", local="10.0.0.2:19200", peer="10.0.0.5:40000", ts="2026-11-25T10:00:00.010000Z"),
        sock("server", "open", local="10.0.0.2:19200", peer="10.0.0.6:40001", owned=False, ts="2026-11-25T10:00:00.020000Z"),
        sock("server", "queued", local="0.0.0.0:19200", queued=1, ts="2026-11-25T10:00:00.020000Z"),
        sock("server", "owned", local="10.0.0.2:19200", peer="10.0.0.6:40001", ts="2026-11-25T10:00:02.120000Z"),
    ]
    (found,) = diagnose(records, clients_by_address={"10.0.0.6:40001": "client2"})
    assert found.kind == "one-at-a-time" and "client2 for 2.1 s" in found.text and "thread" in found.text


def test_quick_accepts_are_not_an_iterative_server():
    records = [
        sock("server", "open", local="10.0.0.2:19200", peer="10.0.0.5:40000", owned=False, ts="2026-11-25T10:00:00.000000Z"),
        sock("server", "owned", local="10.0.0.2:19200", peer="10.0.0.5:40000", ts="2026-11-25T10:00:00.300000Z"),
    ]
    assert diagnose(records) == []


def test_an_empty_datagram_then_the_servers_udp_socket_closing():
    wire = {"flows": [{"proto": "udp", "client": "10.0.0.7:5000", "server": "10.0.0.2:19200",
                       "owner": {"client": "client3", "session": 0},
                       "packets_list": [{"ts": "2026-11-25T10:00:01.000000Z", "dir": "c2s", "len": 5},
                                        {"ts": "2026-11-25T10:00:02.000000Z", "dir": "c2s", "len": 0}]}]}
    records = [sock("server", "bound", proto="udp", local="0.0.0.0:19200"),
               sock("server", "closed", proto="udp", local="0.0.0.0:19200", peer="0.0.0.0:0",
                    ts="2026-11-25T10:00:02.004000Z")]
    (found,) = diagnose(records, wire)
    assert found.kind == "udp-stops-on-empty" and "client3" in found.text and "10:00:02.000" in found.text
    # An empty datagram the server survived is no diagnosis.
    assert diagnose(records[:1], wire) == []


def test_views_are_derived_from_the_socket_tables_and_what_was_printed():
    records = [
        sock("server", "listen", local="0.0.0.0:19200"),
        sock("server", "bound", proto="udp", local="0.0.0.0:19200"),
        sock("server", "open", local="10.0.0.2:19200", peer="10.0.0.5:40000", owned=False),
        sock("client1", "open", local="10.0.0.5:40000", peer="10.0.0.2:19200", owned=True),
        sock("client1", "open", proto="udp", local="127.0.0.1:41000", peer="127.0.0.11:53"),  # the resolver
        printed("client2", "sent 'hi' from ('0.0.0.0', 48001)", ip="10.0.0.6"),
        call("client2", "sendto", "server:19200", proto="udp"),
        printed("server", "('10.0.0.6', 48001) says hi", ip="10.0.0.2"),
        printed("server", "waiting for datagrams on ('0.0.0.0', 19200)", ip="10.0.0.2"),
    ]
    derived = derive_views(records)
    summary = sorted((r["role"], r["service"], r["proto"], r["event"],
                      r["peer"] if r["role"] == "server" else r.get("local_route") or r["local"], r["source"])
                     for r in derived)
    assert summary == [
        ("client", "client1", "tcp", "connected", "10.0.0.5:40000", "socket-table"),
        ("client", "client2", "udp", "bound", "10.0.0.6:48001", "printed"),
        ("server", "server", "tcp", "accepted", "10.0.0.5:40000", "socket-table"),
        ("server", "server", "udp", "received", "10.0.0.6:48001", "printed"),
    ]
