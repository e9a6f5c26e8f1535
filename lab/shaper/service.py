"""`run`: the sidecar's main process. Apply, say ready, serve until SIGTERM, leave nothing behind.

One thread and one selector carry the data path: the NFQUEUE socket, the control socket that
`set` talks to, the signal wake-up pipe and the queue's release timer. Periodic stats come from
a second thread, because reading the kernel's counters runs iptables and tc, which would hold
every queued packet while they run.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import socket
import threading
import time
from typing import Any

from lab.records.writer import RecordWriter
from lab.shaper import kernel
from lab.shaper.backends import Backend, NetemBackend, UserspaceBackend
from lab.shaper.control import ControlServer
from lab.shaper.impairment import Impairment, ImpairmentError
from lab.shaper.plan import Target


@dataclasses.dataclass
class RunOptions:
    impairment: Impairment
    dev: str = "eth0"
    direction: str = "both"
    backend: str = "auto"
    ready_file: str | None = None
    control_path: str = "/run/lab-shaper.sock"
    queue_num: int = 7
    stats_interval_s: float = 5.0
    ipv6: bool = False


class Shaper:
    """One running shaper: its backend, its control socket, its records."""

    def __init__(self, options: RunOptions, writer: RecordWriter) -> None:
        self.options = options
        self.writer = writer
        self.backend: Backend | None = None
        self.started = time.monotonic()
        self.changes = 0
        self.errors = 0
        self._stopping = False

    def _error(self, reason: str, detail: str) -> None:
        self.errors += 1
        self.writer.emit(None, "error", reason=reason, detail=detail)

    def choose_backend(self) -> Backend:
        """netem when the kernel has it (tried, not assumed), else the userspace backend."""
        wanted = self.options.backend
        if wanted in ("auto", "netem"):
            error = kernel.probe_netem(self.options.dev)
            if error is None:
                return NetemBackend(self._target("iptables"))
            if wanted == "netem":
                raise kernel.ShaperError(f"--backend netem: the kernel has no netem ({error})")
        iptables = kernel.pick_iptables()
        if iptables is None:
            raise kernel.ShaperError("userspace backend: neither iptables nor iptables-legacy works here")
        return UserspaceBackend(self._target(iptables), self._error)

    def _target(self, iptables: str) -> Target:
        o = self.options
        return Target(o.dev, o.direction, o.queue_num, iptables, o.ipv6)

    def _describe(self, impairment: Impairment) -> dict[str, Any]:
        assert self.backend is not None
        return {"backend": self.backend.name, "dev": self.options.dev,
                "direction": self.options.direction, **impairment.to_dict()}

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control request: `get` the impairment, or `set` some of its fields."""
        assert self.backend is not None
        op = request.get("op")
        if op == "get":
            return {"ok": True, **self._describe(self.backend.impairment)}
        if op != "set":
            return {"ok": False, "invalid": True, "error": f"unknown op {op!r}: get or set"}
        try:
            changes = request.get("changes") or {}
            new = (Impairment() if request.get("clear") else self.backend.impairment).merged(changes)
        except (ImpairmentError, TypeError) as exc:
            return {"ok": False, "invalid": True, "error": str(exc)}
        old = self.backend.impairment
        try:
            self.backend.change(new)
        except kernel.ShaperError as exc:
            self._error("change-failed", str(exc))
            try:
                self.backend.change(old)
            except kernel.ShaperError as again:
                self._error("restore-failed", str(again))
            return {"ok": False, "error": str(exc)}
        self.changes += 1
        described = self._describe(new)
        self.writer.emit(None, "changed", previous=old.to_dict(), **described)
        return {"ok": True, **described}

    def stats(self) -> dict[str, Any]:
        assert self.backend is not None
        return {"backend": self.backend.name, "uptime_s": round(time.monotonic() - self.started, 3),
                **self.backend.counters()}

    def serve(self) -> int:
        """The whole life: apply, ready, loop, clean up. The exit status is returned."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        control = None
        status = 0
        try:
            self.backend = self.choose_backend()
            control = ControlServer(self.options.control_path, self.handle_request)
            self.backend.start(self.options.impairment)
            self.writer.emit(None, "applied", **self._describe(self.options.impairment),
                             control=self.options.control_path)
            self._touch_ready()
            self._loop(control, wake_r)
        except (kernel.ShaperError, OSError) as exc:
            self._error("apply-failed", str(exc))
            status = 1
        finally:
            if self.backend is not None:
                try:
                    final = self.stats()
                except OSError:
                    final = {}
                self.backend.stop()
                self.writer.emit(None, "stats", final=True, **final)
            if control is not None:
                control.close()
            self._remove_ready()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
            self.writer.emit(None, "summary", ok=status == 0, changes=self.changes, errors=self.errors,
                             uptime_s=round(time.monotonic() - self.started, 3),
                             reason=None if status == 0 else "apply-failed")
        return status

    def _loop(self, control: ControlServer, wake: socket.socket) -> None:
        assert self.backend is not None
        selector = selectors.DefaultSelector()
        selector.register(wake, selectors.EVENT_READ, "wake")
        control.attach(selector)
        if self.backend.fileno() is not None:
            selector.register(self.backend.fileno(), selectors.EVENT_READ, "queue")
        stop_stats = threading.Event()
        reporter = threading.Thread(target=self._report_stats, args=(stop_stats,), name="stats", daemon=True)
        reporter.start()
        try:
            while not self._stopping:
                release = self.backend.next_deadline()
                timeout = None if release is None else max(0.0, release - time.monotonic())
                for key, events in selector.select(timeout):
                    if key.data == "queue":
                        self.backend.on_readable()
                    elif key.data is control:
                        control.on_ready(key.fileobj, events)
                    else:
                        _drain(wake)
                self.backend.on_timer()
        finally:
            stop_stats.set()
            reporter.join(timeout=5)
            selector.close()

    def _report_stats(self, stop: threading.Event) -> None:
        while not stop.wait(self.options.stats_interval_s):
            try:
                self.writer.emit(None, "stats", **self.stats())
            except (kernel.ShaperError, OSError) as exc:
                self._error("stats", str(exc))

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _touch_ready(self) -> None:
        if self.options.ready_file:
            with open(self.options.ready_file, "w", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")

    def _remove_ready(self) -> None:
        if self.options.ready_file:
            try:
                os.unlink(self.options.ready_file)
            except FileNotFoundError:
                pass


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        pass
