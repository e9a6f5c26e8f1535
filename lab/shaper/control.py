"""The control socket: `set` (another process, via `docker exec`) talks to the running shaper.

One JSON object per line each way over a unix stream socket: a request
`{"op": "set", "changes": {...}}` or `{"op": "get"}`, a reply `{"ok": true, "impairment": {...}}`
or `{"ok": false, "error": "..."}`. The server side never blocks, so that it can share the
shaper's event loop with the packet queue.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
from collections.abc import Callable
from typing import Any

DEFAULT_PATH = "/run/lab-shaper.sock"
MAX_REQUEST = 65536

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class NoShaper(Exception):
    """No shaper is listening on the control socket."""


class ControlServer:
    """Accepts control connections and answers them without ever blocking: it registers its
    sockets with the owner's selector (`attach`) and is called back through `on_ready`, so a
    client slow to read its reply never holds up the packets the same loop carries."""

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
        self.selector: selectors.BaseSelector | None = None
        self.requests: dict[socket.socket, bytes] = {}  # still reading the request line
        self.replies: dict[socket.socket, bytes] = {}  # the unsent rest of the reply

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Serve through this selector; its keys for our sockets carry this server as data."""
        self.selector = selector
        selector.register(self.listener, selectors.EVENT_READ, self)

    def on_ready(self, sock: Any, events: int) -> None:
        """The selector found one of our sockets ready."""
        if sock is self.listener:
            self._accept()
        elif sock in self.requests:
            self._read(sock)
        elif sock in self.replies:
            self._write(sock)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        conn.setblocking(False)
        self.requests[conn] = b""
        self._watch(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        """Collect the request line; once it is in, answer it."""
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data = self.requests[conn] + chunk
        if b"\n" not in data and chunk and len(data) < MAX_REQUEST:
            self.requests[conn] = data
            return
        del self.requests[conn]
        if not data.strip():
            self.drop(conn)
            return
        self.replies[conn] = json.dumps(self._answer(data.split(b"\n", 1)[0])).encode() + b"\n"
        self._watch(conn, selectors.EVENT_WRITE, modify=True)
        self._write(conn)  # usually all of it fits at once

    def _write(self, conn: socket.socket) -> None:
        """Send what the socket takes now; close once the whole reply is out."""
        try:
            sent = conn.send(self.replies[conn])
        except BlockingIOError:
            return
        except OSError:
            sent = len(self.replies[conn])  # the client is gone: nothing left to tell it
        rest = self.replies[conn][sent:]
        if rest:
            self.replies[conn] = rest
        else:
            self.drop(conn)

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request is not an object")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        return self.handler(request)

    def _watch(self, conn: socket.socket, events: int, modify: bool = False) -> None:
        if self.selector is not None:
            if modify:
                self.selector.modify(conn, events, self)
            else:
                self.selector.register(conn, events, self)

    def drop(self, conn: socket.socket) -> None:
        self.requests.pop(conn, None)
        self.replies.pop(conn, None)
        if self.selector is not None:
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
        conn.close()

    def close(self) -> None:
        for conn in [*self.requests, *self.replies]:
            self.drop(conn)
        if self.selector is not None:
            try:
                self.selector.unregister(self.listener)
            except (KeyError, ValueError):
                pass
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
