"""The control socket: `set` (another process, via `docker exec`) talks to the running shaper.

One JSON object per line each way over a unix stream socket: a request
`{"op": "set", "changes": {...}}` or `{"op": "get"}`, a reply `{"ok": true, "impairment": {...}}`
or `{"ok": false, "error": "..."}`. The server side is non-blocking so that it can share the
shaper's event loop with the packet queue.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Callable

DEFAULT_PATH = "/run/lab-shaper.sock"
MAX_REQUEST = 65536

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class NoShaper(Exception):
    """No shaper is listening on the control socket."""


class ControlServer:
    """Accepts control connections; `on_readable(sock)` is called by the owner's selector."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        if os.path.exists(path):
            _remove_stale(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(8)
        self.listener.setblocking(False)
        self.buffers: dict[socket.socket, bytes] = {}

    def accept(self) -> socket.socket | None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        conn.setblocking(False)
        self.buffers[conn] = b""
        return conn

    def on_readable(self, conn: socket.socket) -> bool:
        """Read from a client; answer once a whole line is in. False when conn is finished."""
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        data = self.buffers[conn] + chunk
        if b"\n" not in data and chunk and len(data) < MAX_REQUEST:
            self.buffers[conn] = data
            return True
        if data.strip():
            reply = self._answer(data.split(b"\n", 1)[0])
            try:
                conn.setblocking(True)
                conn.settimeout(1.0)
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
        self.drop(conn)
        return False

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request is not an object")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        return self.handler(request)

    def drop(self, conn: socket.socket) -> None:
        self.buffers.pop(conn, None)
        conn.close()

    def close(self) -> None:
        for conn in list(self.buffers):
            self.drop(conn)
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _remove_stale(path: str) -> None:
    """A socket file nobody answers on is left from a killed shaper; one that answers is live."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another shaper is already running on {path}")


def request(path: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the shaper at `path` and return its reply; NoShaper if none runs."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoShaper(f"no shaper is running (nothing answers on {path}: {exc.strerror})") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data.strip():
        raise NoShaper(f"the shaper on {path} closed the connection without an answer")
    return json.loads(data)
