"""A test's SIGINT reaches its child even when the suite runs as a background job."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.procs import default_sigint

SHOW_HANDLER = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"


def child_has_ctrl_c_handler(**popen) -> bool:
    out = subprocess.run([sys.executable, "-c", SHOW_HANDLER], capture_output=True, text=True, check=True, **popen)
    return out.stdout.strip() == "True"


def test_children_get_a_default_sigint_handler_under_an_ignoring_parent():
    # What `nohup` or `make test &` does to the suite: SIGINT ignored, inherited by every child.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert not child_has_ctrl_c_handler(), "an ignored SIGINT should be inherited (the problem)"
        assert child_has_ctrl_c_handler(preexec_fn=default_sigint)
    finally:
        signal.signal(signal.SIGINT, previous)
