"""`python3 -m lab.echo server|client ARGS`: the two echo programs that run in the lab's containers.

Exit codes for both: 0 ok, 1 the conversation failed (the reason is logged), 2 bad options.
"""

from __future__ import annotations

import importlib
import sys

USAGE = """\
usage: python3 -m lab.echo {server,client} [options]

The lab's echo programs. Each prints one JSON record per line on stdout
(docs/log-schema.md).

commands:
  server    TCP and UDP echo server (port 19200 by default): accepts connections,
            echoes every byte back, answers each datagram with the same datagram.
  client    sends messages to the server over TCP and/or UDP, waits for each echo,
            checks it is intact, and logs round-trip times and its ephemeral ports.

Run `python3 -m lab.echo server --help` or `... client --help` for the options.
exit codes: 0 ok, 1 the conversation failed (reason logged), 2 bad options.
"""

COMMANDS = {"server": "lab.echo.server", "client": "lab.echo.client"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write(USAGE)
        return 2
    if args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    command, rest = args[0], args[1:]
    module_name = COMMANDS.get(command)
    if module_name is None:
        print(f"lab.echo: error: unknown command {command!r} (choose server or client)", file=sys.stderr)
        return 2
    # Imported lazily: the server does not pay for the client's imports, nor the other way round.
    module = importlib.import_module(module_name)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
