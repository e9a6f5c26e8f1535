"""Command-line pieces the lab's programs share: the one-line error parser, the lab's port and
range types.

Every bad option value ends the same way in every program: one line `PROG: error: WHY` on
stderr and exit status 2, with no usage dump and no traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

DEFAULT_PORT = 19200  # the echo server's port, as in the tutorial; the client's default target
# The largest message the client sends over UDP, and the scenario model allows with udp:
# one IPv4 datagram, 65535 - 20 (IP header) - 8 (UDP header).
UDP_PAYLOAD_MAX = 65507
BAD_OPTIONS = 2  # exit status for a bad option value


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2 (sub-parsers too:
    pass parser_class=OneLineParser to add_subparsers)."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_OPTIONS, f"{self.prog}: error: {message}\n")


def exit_status(exc: SystemExit) -> int:
    """The status a parser's SystemExit carries (0 after --help, 2 after an error)."""
    return exc.code if isinstance(exc.code, int) else BAD_OPTIONS


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer within low..high, else a one-line reason."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high}, got {value}")
        return value
    return parse
