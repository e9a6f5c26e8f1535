"""Option parsing, exit statuses and the control socket protocol (no root needed)."""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading

import pytest

from lab.shaper import cli, control


def _run(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv,needle", [
    (["run", "--loss", "1.2"], "bad --loss 1.2"),
    (["run", "--loss", "ten"], "argument --loss: invalid float value: 'ten'"),
    (["run", "--delay-ms", "-5"], "bad --delay-ms -5.0"),
    (["run", "--rate", "fast"], "bad --rate 'fast'"),
    (["run", "--reorder", "0.5"], "bad --reorder 0.5: needs --delay-ms > 0"),
    (["run", "--delay-ms", "5", "--jitter-ms", "6"], "bad --jitter-ms 6.0: must not exceed --delay-ms (5)"),
    (["run", "--rate", "7kbit"], "bad --rate '7kbit': must be at least 8kbit"),
    (["run", "--direction", "up"], "invalid choice: 'up'"),
    (["run", "--backend", "tc"], "invalid choice: 'tc'"),
    (["run", "--queue-num", "70000"], "bad --queue-num 70000"),
    (["set", "--corrupt", "2"], "bad --corrupt 2.0"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_values_give_one_line_and_exit_2(argv, needle, capsys):
    status, out, err = _run(argv, capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_set_with_no_shaper_running_exits_1(tmp_path, capsys):
    path = str(tmp_path / "none.sock")
    status, out, err = _run(["set", "--loss", "0.3", "--control", path], capsys)
    assert status == 1
    assert "no shaper is running" in err and path in err


def test_only_given_options_become_changes():
    args = cli.build_parser().parse_args(["set", "--loss", "0.3", "--rate", "none"])
    assert cli.changes_from(args) == {"loss": 0.3, "rate": None}
    args = cli.build_parser().parse_args(["run", "--delay-ms", "5", "--rate", "2mbit"])
    assert cli.changes_from(args) == {"delay_ms": 5.0, "rate": "2mbit"}
    defaults = cli.build_parser().parse_args(["run"])
    assert (defaults.dev, defaults.direction, defaults.backend, defaults.control) == (
        "eth0", "both", "auto", control.DEFAULT_PATH)


class _Served:
    """A real ControlServer served by a selector loop in a thread, as the shaper serves it."""

    def __init__(self, path: str) -> None:
        self.requests: list[dict] = []
        self.server = control.ControlServer(path, self._handle)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _handle(self, request):
        self.requests.append(request)
        if request.get("changes", {}).get("loss") == 0.9:
            return {"ok": False, "invalid": True, "error": "refused by the test shaper"}
        return {"ok": True, "loss": request.get("changes", {}).get("loss")}

    def _loop(self):
        with selectors.DefaultSelector() as selector:
            self.server.attach(selector)
            while not self.stop.is_set():
                for key, events in selector.select(0.05):
                    key.data.on_ready(key.fileobj, events)
            self.server.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def served(tmp_path):
    shaper = _Served(str(tmp_path / "ctl.sock"))
    yield shaper
    shaper.close()


def test_set_sends_the_changes_and_prints_the_reply(served, capsys):
    status, out, err = _run(["set", "--loss", "0.25", "--clear", "--control", served.server.path], capsys)
    assert status == 0, err
    assert served.requests == [{"op": "set", "changes": {"loss": 0.25}, "clear": True}]
    assert out.strip() == '{"ok": true, "loss": 0.25}'


def test_set_refused_by_the_shaper_exits_2_with_its_reason(served, capsys):
    status, out, err = _run(["set", "--loss", "0.9", "--control", served.server.path], capsys)
    assert status == 2
    assert "refused by the test shaper" in err


def test_bad_json_gets_an_error_reply(served):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(served.server.path)
        sock.sendall(b"{not json\n")
        reply = sock.makefile().readline()
    assert '"ok": false' in reply and "bad request" in reply


def test_a_stale_socket_file_is_replaced_but_a_live_one_is_not(tmp_path, served):
    with pytest.raises(OSError, match="already running"):
        control.ControlServer(served.server.path, lambda r: {})
    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()  # the file stays, nobody listens: what a killed shaper leaves
    second = _Served(str(stale))
    try:
        assert control.request(str(stale), {"op": "set", "changes": {"loss": 0.5}}) == {"ok": True, "loss": 0.5}
    finally:
        second.close()
    assert not os.path.exists(stale)


def test_a_reply_too_big_for_the_socket_waits_for_the_reader_without_blocking(tmp_path):
    # 4 MB does not fit in a unix socket's buffers: the server must not block (nor give up)
    # while the client is not reading; the rest goes out as the client reads.
    blob = "x" * (4 << 20)
    server = control.ControlServer(str(tmp_path / "ctl.sock"), lambda request: {"ok": True, "blob": blob})
    selector = selectors.DefaultSelector()
    client = socket.socket(socket.AF_UNIX)
    try:
        server.attach(selector)
        client.connect(server.path)
        client.sendall(b'{"op": "get"}\n')

        def serve_ready(timeout):
            for key, events in selector.select(timeout):
                key.data.on_ready(key.fileobj, events)

        while not server.replies:  # accept, read the request, send the first part
            serve_ready(5)
        (conn,) = server.replies
        assert conn.getblocking() is False
        assert selector.get_key(conn).events == selectors.EVENT_WRITE
        client.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            data += client.recv(1 << 16)
            serve_ready(0)
        assert json.loads(data) == {"ok": True, "blob": blob}
        assert not server.replies and not server.requests
    finally:
        client.close()
        server.close()
        selector.close()
