"""`python3 -m lab.learner run ...` runs a learner's program; `... watch` records the socket
table; `... ready --port P` is the health check of a learner's server."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("run", "watch", "ready"):
        print("usage: python3 -m lab.learner run|watch|ready [--help]", file=sys.stderr)
        return 2
    if args[0] == "run":
        from lab.learner.launch import main as command
    elif args[0] == "watch":
        from lab.learner.watch import main as command
    else:
        from lab.learner.ready import main as command
    return int(command(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
