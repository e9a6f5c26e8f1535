"""Many clients at once, running out of descriptors, and other programs as clients."""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import sys
import textwrap

import pytest
from server_harness import WITHOUT_LINUX_ONLY, EchoServer, addr_text, recv_exactly, tcp_echo, wait_until


@pytest.fixture
def many_fds():
    """Let this test process hold ~2100 sockets; restore the limit afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4096)
    if wanted < 2100:
        pytest.fail(f"hard RLIMIT_NOFILE {hard} is too low for 1000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("mode", ["async", "threaded"])
def test_thousand_connections_at_once(mode, many_fds):
    with EchoServer("--mode", mode, "--log", "connections") as server:
        clients = []
        try:
            for n in range(1, 1001):
                clients.append(socket.create_connection(server.addr, timeout=10))
                if n % 50 == 0:
                    # keep within listen(100): a full accept queue drops SYNs, costing 1 s retries
                    server.wait_count("accepted", n - 50)
            for i, sock in enumerate(clients):
                sock.sendall(b"%04d" % i)
            for i, sock in enumerate(clients):
                assert recv_exactly(sock, 4, timeout=10) == b"%04d" % i
            locals_ = {addr_text(sock.getsockname()) for sock in clients}
        finally:
            for sock in clients:
                sock.close()
        server.wait_count("closed", 1000)
        assert {r["peer"] for r in server.events("accepted")} == locals_


# iterative holds one client at a time; async-no-epoll pauses its listener through poller.SelectorPoll
@pytest.mark.parametrize("mode, prelude", [("async", None), ("threaded", None),
                                           pytest.param("async", WITHOUT_LINUX_ONLY, id="async-no-epoll")],
                         ids=["async", "threaded", "async-no-epoll"])
def test_out_of_descriptors_refuses_politely_and_keeps_serving(mode, prelude):
    with EchoServer("--mode", mode, "--log", "connections", nofile=24, prelude=prelude) as server:
        clients, locals_ = [], set()
        try:
            for _ in range(40):
                clients.append(socket.create_connection(server.addr, timeout=5))
                locals_.add(addr_text(clients[-1].getsockname()))
            refused = server.wait_record(lambda r: r["event"] == "refused")
            assert refused["reason"] == "fd-limit"
            # the refused client got a close, not silence
            (sock,) = [s for s in clients if addr_text(s.getsockname()) == refused["peer"]]
            try:
                assert recv_exactly(sock, 1) == b""
            except ConnectionResetError:
                pass
        finally:
            for sock in clients:
                sock.close()
        # Descriptors come back as those clients go: once every one of them was either served
        # and closed or refused, the server holds none of them (nor has any left in its accept
        # queue) and the next client is served. Waiting for fewer lets a newcomer race the
        # storm's leftovers for the last descriptor and be refused, rightly.
        wait_until(lambda: locals_ <= {r.get("peer") for r in server.events("closed") + server.events("refused")},
                   timeout=10)
        # each refusal names a client that really was turned away (none served, none twice)
        refused_peers = [r.get("peer") for r in server.events("refused")]
        assert len(set(refused_peers)) == len(refused_peers)
        assert set(refused_peers) <= locals_ - {r["peer"] for r in server.events("accepted")}
        assert tcp_echo(server, b"after the storm")[0] == b"after the storm"
        assert server.stop() == 0


TUTORIAL_TCP_CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print(s.getsockname()[1], flush=True)
    s.send(sys.argv[2].encode())
    data = s.recv(1024)
    print(data.decode())
    s.close()
""")

TUTORIAL_UDP_CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(sys.argv[2].encode(), ("127.0.0.1", int(sys.argv[1])))
    print(s.getsockname()[1], flush=True)
    data, addr = s.recvfrom(1024)
    print(data.decode())
""")


@pytest.mark.parametrize("mode", ["iterative", "threaded", "async"])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_tutorial_raw_socket_client(mode, proto):
    script = TUTORIAL_TCP_CLIENT if proto == "tcp" else TUTORIAL_UDP_CLIENT
    with EchoServer("--mode", mode) as server:
        out = subprocess.run([sys.executable, "-c", script, str(server.port), "Hello, tutorial"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.split("\n")
        port, echoed = int(out[0]), out[1]
        assert echoed == "Hello, tutorial"
        event = "accepted" if proto == "tcp" else "received"
        record = server.wait_record(lambda r: r["event"] == event and r["proto"] == proto)
        assert record["peer"] == f"127.0.0.1:{port}"


def test_socat_as_tcp_client():
    with EchoServer() as server:
        result = subprocess.run(["socat", "-t", "2", "-", f"TCP:127.0.0.1:{server.port}"],
                                input=b"socat says hi\n" * 200, capture_output=True, timeout=10)
        assert result.returncode == 0 and result.stdout == b"socat says hi\n" * 200


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ncat_as_client(proto):
    with EchoServer() as server:
        args = ["ncat", *(["--udp"] if proto == "udp" else []), "127.0.0.1", str(server.port)]
        ncat = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ncat.stdin.write(b"ncat line\n")
            ncat.stdin.flush()  # stdin stays open: ncat --udp quits at EOF before the echo
            assert select.select([ncat.stdout], [], [], 5)[0], "no echo within 5 s"
            assert ncat.stdout.read1(64) == b"ncat line\n"
        finally:
            ncat.kill()
            ncat.communicate()
        record = server.wait_record(lambda r: r["event"] == "received" and r["proto"] == proto)
        assert record["text"] == "ncat line\n"
