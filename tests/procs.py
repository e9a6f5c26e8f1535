"""Child processes that a test may interrupt with SIGINT, wherever the suite itself was started.

A shell starts a background job (`make test &`, `nohup`) with SIGINT ignored, and an ignored
signal stays ignored across fork and exec: Python then never installs its Ctrl-C handler in the
child, and a test's SIGINT does nothing. Every child that a test sends SIGINT to is started with
`preexec_fn=default_sigint` (or calls it from its own preexec function).
"""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default, so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
