"""The kernel's socket tables, parsed: fixed lines in the kernel's format, then this host's own."""

from __future__ import annotations

import socket

from lab.learner.procnet import parse_table, read_tables

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4B00 00000000:0000 0A 00000000:00000002 00:00000000 00000000 10001        0 4242 1 0 100 0 0 10 0
   1: 0500130A:BDCE 0200130A:4B00 01 00000018:00000000 01:00000014 00000000 10001        0 4243 1 0 20 4 30 10 -1
   2: garbage
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue ...
   0: 00000000000000000000000000000000:4B00 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 77
   1: 0000000000000000FFFF00000500130A:9C40 0000000000000000FFFF00000200130A:4B00 01 00000000:00000000 00:00000000 00000000 0 0 78
   2: 000077FD000000000000000005000000:9C41 000077FD000000000000000002000000:4B00 01 00000000:00000000 00:00000000 00000000 0 0 79
"""
UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:4B00 00000000:0000 07 00000000:00000000 00:00000000 00000000 10001        0 90 2 0 0
  2: 0500130A:D2F0 0200130A:4B00 01 00000000:00000000 00:00000000 00000000 10001        0 91 2 0 0
"""


def test_ipv4_rows_read_as_addresses_states_and_queues():
    rows = parse_table("tcp", TCP)
    assert len(rows) == 2  # the damaged line is skipped, not fatal
    listening, connected = rows
    assert (listening.local, listening.remote, listening.state) == ("127.0.0.1:19200", "0.0.0.0:0", "listen")
    assert listening.rx_queue == 2
    assert (connected.local, connected.remote, connected.state) == ("10.19.0.5:48590", "10.19.0.2:19200", "established")
    assert (connected.tx_queue, connected.uid, connected.inode) == (24, 10001, 4243)


def test_ipv6_rows_including_v4_mapped_and_ula():
    rows = parse_table("tcp", TCP6)
    assert [r.local for r in rows] == ["[::]:19200", "10.19.0.5:40000", "[fd77::5]:40001"]
    assert [r.remote for r in rows] == ["[::]:0", "10.19.0.2:19200", "[fd77::2]:19200"]


def test_udp_rows_say_bound_or_connected():
    rows = parse_table("udp", UDP)
    assert [(r.local, r.state) for r in rows] == [("0.0.0.0:19200", "bound"), ("10.19.0.5:54000", "connected")]


def test_this_hosts_own_sockets_appear_with_the_waiting_connection_counted():
    with socket.socket() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        server.bind(("127.0.0.1", 0))
        server.listen(100)
        udp.bind(("127.0.0.1", 0))
        with socket.create_connection(server.getsockname()) as client:
            port, own = server.getsockname()[1], "{}:{}".format(*client.getsockname())
            rows = read_tables()
            listening = [r for r in rows if r.local == f"127.0.0.1:{port}" and r.state == "listen"]
            assert len(listening) == 1 and listening[0].rx_queue == 1  # connected, not yet accepted
            assert any(r.local == own and r.remote == f"127.0.0.1:{port}" and r.state == "established" for r in rows)
            assert any(r.proto == "udp" and r.local == f"127.0.0.1:{udp.getsockname()[1]}" for r in rows)
