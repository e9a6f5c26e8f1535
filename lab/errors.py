"""The lab's exceptions: one base, a few children that callers catch by meaning.

The CLI maps them to exit codes: ScenarioError and UsageError -> 2, everything else -> 1.
"""


class LabError(Exception):
    """Base of every error the lab reports to a user (one line, no traceback)."""

    exit_code = 1


class ScenarioError(LabError):
    """A scenario file or name is wrong: the message names the file, the field and what is allowed."""

    exit_code = 2


class UsageError(LabError):
    """A command-line value is wrong."""

    exit_code = 2


class EngineUnavailable(LabError):
    """Docker or Compose v2 cannot be reached."""

    hint = "run `lab doctor` to see what is missing and how to fix it"


class EngineError(LabError):
    """A Docker or Compose command failed; the message carries the command and its own error output."""


class RunFailed(LabError):
    """A run could not complete (timeout, a container failed to start...)."""
