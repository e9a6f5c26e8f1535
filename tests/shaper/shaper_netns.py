"""Two network namespaces joined by a veth pair, and the processes the live shaper tests run in them.

Namespace `a` plays the sidecar's namespace (its end of the pair is called eth0, as in a
container); `b` is the far side with an echo server. Everything made here is removed by
`close()`, which the fixture calls even when a test fails.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETPROBE = str(pathlib.Path(__file__).with_name("netprobe.py"))
_counter = itertools.count(1)


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
    return done


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.02)


class NamespacePair:
    def __init__(self) -> None:
        n = next(_counter)
        self.a = f"shp{os.getpid()}a{n}"
        self.b = f"shp{os.getpid()}b{n}"
        subnet = (os.getpid() * 7 + n) % 250 + 1
        self.addr_a, self.addr_b = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        self.processes: list[subprocess.Popen] = []
        sh("ip", "netns", "add", self.a)
        try:
            sh("ip", "netns", "add", self.b)
            sh("ip", "-n", self.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", self.b)
            for ns, addr in ((self.a, self.addr_a), (self.b, self.addr_b)):
                sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen:
        process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.processes.append(process)
        return process

    def serve(self, kind: str = "echo", port: int = 9000) -> subprocess.Popen:
        """A netprobe server in b, returned once it says it is ready."""
        process = self.spawn(self.b, sys.executable, NETPROBE, kind, "--port", str(port))
        ready, _, _ = select.select([process.stdout], [], [], 10)
        line = process.stdout.readline() if ready else ""
        if line.strip() != "ready":
            stderr = process.stderr.read() if process.poll() is not None else ""
            raise RuntimeError(f"netprobe {kind} did not start: {line!r} {stderr}")
        return process

    def probe(self, kind: str, *args: str, ns: str | None = None, port: int = 9000) -> dict:
        """Run a netprobe client (from a by default) against b and return its JSON result."""
        done = self.run(ns or self.a, sys.executable, NETPROBE, kind, "--to", self.addr_b, "--port", str(port), *args)
        return json.loads(done.stdout)

    def ping(self, count: int, interval_ms: float = 2, wait_ms: float = 400, size: int = 64) -> dict:
        return self.probe("ping", "--count", str(count), "--interval-ms", str(interval_ms),
                          "--wait-ms", str(wait_ms), "--size", str(size))

    def start_shaper(self, tmp_path: pathlib.Path, *options: str, wrapper: tuple[str, ...] = ()) -> ShaperProcess:
        shaper = ShaperProcess(self, tmp_path, options, wrapper)
        self.processes.append(shaper.process)
        return shaper

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            try:
                process.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)


class ShaperProcess:
    """`python3 -m lab.shaper run` inside namespace a, with its own ready file and control socket."""

    def __init__(self, pair: NamespacePair, tmp_path: pathlib.Path, options: tuple[str, ...],
                 wrapper: tuple[str, ...] = ()) -> None:
        n = next(_counter)
        self.pair = pair
        self.ready = tmp_path / f"ready{n}"
        self.control = str(tmp_path / f"ctl{n}.sock")
        self.process = pair.spawn(pair.a, *wrapper, sys.executable, "-m", "lab.shaper", "run", "--dev", "eth0",
                                  "--ready-file", str(self.ready), "--control", self.control,
                                  "--name", "shaper-test", *options)
        self.records: list[dict] = []
        self.stderr = ""

    def wait_ready(self) -> ShaperProcess:
        wait_for(lambda: self.ready.exists() or self.process.poll() is not None, 15, "the shaper's ready file")
        if not self.ready.exists():
            self.finish()
            raise RuntimeError(f"shaper exited {self.process.returncode}: {self.stderr} {self.records}")
        return self

    def set(self, *options: str) -> subprocess.CompletedProcess[str]:
        return self.pair.run(self.pair.a, sys.executable, "-m", "lab.shaper", "set", "--control", self.control,
                             *options, check=False)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.finish()

    def finish(self) -> int:
        out, self.stderr = self.process.communicate(timeout=10)
        self.records = [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.process.returncode

    def events(self, name: str) -> list[dict]:
        return [r for r in self.records if r["event"] == name]
