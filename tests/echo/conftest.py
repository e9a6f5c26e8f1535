"""Generic fixtures for the echo program tests: free ports and subprocesses that emit records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the OS just handed out on loopback (free for TCP and, usually, UDP too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def parse_records(text: str) -> list[dict]:
    """The JSON records in a program's stdout; a non-JSON line fails the test loudly."""
    records = []
    for line in text.splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, step: float = 0.01) -> object:
    """Poll predicate until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


class Program:
    """A `python3 -m lab.echo ...` subprocess whose stdout lines are JSON records."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab.echo", *args],
            cwd=REPO, env=full_env, text=True, encoding="utf-8",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stdout = ""
        self.stderr = ""

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for exit (kill at the deadline) and collect its output."""
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stdout, self.stderr = self.proc.communicate()
            raise
        return self.proc.returncode

    @property
    def records(self) -> list[dict]:
        return parse_records(self.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def run_program():
    """Start `python3 -m lab.echo ARGS` subprocesses; every one is killed at teardown."""
    started: list[Program] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Program:
        program = Program(list(args), env)
        started.append(program)
        return program

    yield start
    for program in started:
        program.stop()
