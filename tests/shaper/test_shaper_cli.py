"""Option parsing, exit statuses and the control socket protocol (no root needed)."""

from __future__ import annotations

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
    (["run", "--rate", "fast"], "bad rate 'fast'"),
    (["run", "--reorder", "0.5"], "--reorder needs --delay-ms"),
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
        selector = selectors.DefaultSelector()
        selector.register(self.server.listener, selectors.EVENT_READ, None)
        while not self.stop.is_set():
            for key, _ in selector.select(0.05):
                if key.data is None:
                    conn = self.server.accept()
                    if conn:
                        selector.register(conn, selectors.EVENT_READ, "c")
                elif not self.server.on_readable(key.fileobj):
                    selector.unregister(key.fileobj)
        selector.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()


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
