"""Run a learner's program and record what it prints and which sockets it asks for.

The program runs as a child process, unchanged. Every line it writes on stdout or stderr
becomes an `output` record with the time it arrived, the stream and the line number, so its
output joins the lab's timeline. For Python programs a tiny bootstrap installs an audit hook
(PEP 578) in the child before the program starts: each `bind`, `connect` and `sendto` the
program calls is reported through a private pipe and recorded as a `socket` record, with
the address the program asked for. That is how the lab knows a client connected to
127.0.0.1 even when the kernel refused it too fast for any socket table to show it.

What is kept is bounded (`--output-limit` bytes of output per program): past the limit the
lines are still read, so the program never blocks on a full pipe, but only counted, and a
`cut` record says how much was left out. The launcher's exit status is the program's (128+N
when a signal N ended it), so the lab judges the program, not the launcher.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.records.options import OneLineParser, int_in
from lab.records.schema import text_fields
from lab.records.writer import RecordWriter

DEFAULT_OUTPUT_LIMIT = 1 << 20
LONGEST_LINE = 64 * 1024  # a line without a newline is recorded in pieces of at most this
AUDIT_LIMIT = 2000  # socket calls recorded per program; more are counted

# Runs first in the child: report socket calls on the audit fd, then become the program.
BOOTSTRAP = r"""
import json, os, runpy, socket, sys
fd = int(os.environ.pop("LAB_AUDIT_FD"))
def _proto(sock):
    return {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(sock.type & 0xF, str(sock.type))
def _hook(event, args):
    if event not in ("socket.bind", "socket.connect", "socket.sendto") or not args:
        return
    if isinstance(args[0], socket.socket):
        try:
            address = args[-1]
            address = list(address) if isinstance(address, tuple) else str(address)
            line = {"call": event[7:], "proto": _proto(args[0]), "address": address}
            os.write(fd, (json.dumps(line) + "\n").encode())
        except Exception:
            pass
sys.addaudithook(_hook)
target = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
runpy.run_path(target, run_name="__main__")
"""


def resolve(target: str) -> tuple[list[str], bool]:
    """The child's command for TARGET, and whether it is a Python program we can audit."""
    path = Path(target)
    if path.is_dir():
        path = path / "main.py"
        if not path.is_file():
            raise FileNotFoundError(f"{target}: a folder needs a main.py")
    if path.is_file() and path.suffix == ".py":
        return [sys.executable, "-u", "-c", BOOTSTRAP, str(path)], True
    return [target], False


def _address_text(address: Any) -> str:
    if isinstance(address, list) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class Launch:
    """The child, its three pipes, and the bookkeeping of what was kept and what was cut."""

    def __init__(self, writer: RecordWriter, limit: int) -> None:
        self.writer = writer
        self.limit = limit
        self.kept = 0
        self.cut_bytes = 0
        self.cut_lines = 0
        self.lines = {"stdout": 0, "stderr": 0}
        self.audit_count = 0

    def line(self, stream: str, data: bytes) -> None:
        self.lines[stream] += 1
        if self.kept + len(data) > self.limit:
            self.cut_bytes += len(data)
            self.cut_lines += 1
            return
        self.kept += len(data)
        body = data.rstrip(b"\n").rstrip(b"\r")
        self.writer.emit(None, "output", stream=stream, line=self.lines[stream], bytes=len(body),
                         **text_fields(body, limit=LONGEST_LINE))

    def audit(self, data: bytes) -> None:
        self.audit_count += 1
        if self.audit_count > AUDIT_LIMIT:
            return
        try:
            call = json.loads(data)
        except ValueError:
            return
        self.writer.emit(call.get("proto"), "socket", call=call.get("call"), address=_address_text(call.get("address")))


def run(command: list[str], audited: bool, writer: RecordWriter, limit: int, stdin_text: str | None) -> int:
    launch = Launch(writer, limit)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    audit_read = audit_write = None
    if audited:
        audit_read, audit_write = os.pipe()
        env["LAB_AUDIT_FD"] = str(audit_write)
    try:
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            pass_fds=(audit_write,) if audit_write is not None else (),
        )
    except OSError as exc:
        writer.emit(None, "error", reason="start", detail=f"{command[0]}: {exc.strerror or exc}")
        return 127
    finally:
        if audit_write is not None:
            os.close(audit_write)
    writer.emit(None, "started", argv=command[4:] if audited else command, pid=child.pid)
    if stdin_text is not None:
        try:
            child.stdin.write(stdin_text.encode())
            child.stdin.close()
        except OSError:
            pass
        writer.emit(None, "input", **text_fields(stdin_text.encode()))

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)

    selector = selectors.DefaultSelector()
    pending: dict[int, bytearray] = {}
    streams = {child.stdout.fileno(): "stdout", child.stderr.fileno(): "stderr"}
    if audit_read is not None:
        streams[audit_read] = "audit"
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
        pending[fd] = bytearray()
    while streams:
        for key, _ in selector.select():
            fd = key.fd
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            buffer = pending[fd]
            buffer += data
            while buffer:
                end = buffer.find(b"\n", 0, LONGEST_LINE)
                if end >= 0:
                    cut = end + 1
                elif len(buffer) >= LONGEST_LINE:
                    cut = LONGEST_LINE
                elif not data:
                    cut = len(buffer)  # the last line, without its newline
                else:
                    break
                piece = bytes(buffer[:cut])
                del buffer[:cut]
                if streams[fd] == "audit":
                    launch.audit(piece)
                else:
                    launch.line(streams[fd], piece)
            if not data:
                selector.unregister(fd)
                del streams[fd]
    code = child.wait()
    status = code if code >= 0 else 128 - code
    if launch.cut_lines:
        writer.emit(None, "cut", lines=launch.cut_lines, bytes=launch.cut_bytes, kept_bytes=launch.kept,
                    detail=f"output beyond {limit} bytes was read but not kept")
    if launch.audit_count > AUDIT_LIMIT:
        writer.emit(None, "cut", calls=launch.audit_count - AUDIT_LIMIT, detail=f"socket calls beyond {AUDIT_LIMIT}")
    fields: dict[str, Any] = {"code": status, "lines": dict(launch.lines)}
    if code < 0:
        fields["signal"] = signal.Signals(-code).name
    writer.emit(None, "exited", **fields)
    return status


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="lab.learner run", description="Run a program and record its output and socket calls.")
    parser.add_argument("--output-limit", type=int_in(1024, 1 << 30), default=DEFAULT_OUTPUT_LIMIT,
                        help=f"bytes of output kept per program (default {DEFAULT_OUTPUT_LIMIT})")
    parser.add_argument("--stdin", help="text given to the program on its standard input")
    parser.add_argument("target", help="a Python file, a folder with main.py, or a command")
    parser.add_argument("args", nargs="*", help="the program's own arguments (after --)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    writer = RecordWriter("program")
    try:
        command, audited = resolve(options.target)
    except FileNotFoundError as exc:
        writer.emit(None, "error", reason="start", detail=str(exc))
        return 127
    return run([*command, *options.args], audited, writer, options.output_limit, options.stdin)
