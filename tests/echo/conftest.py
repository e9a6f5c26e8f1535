"""Helpers for the echo program tests: free ports, records from a program's output, waiting on a condition."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

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
