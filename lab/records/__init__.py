"""The lab's record format and the command-line pieces its programs share (stdlib only).

Both sides of the lab use it: the programs in the containers (`lab.echo`, `lab.shaper`) write
records with it, and the orchestrator reads them with the same definitions. It imports nothing
but the standard library, so it is copied into the node image next to the programs.

- `schema`: the fields every record shares (docs/log-schema.md): timestamps, addresses, text.
- `writer`: `RecordWriter`, one JSON line per event.
- `options`: the one-line option parser, the echo server's port, range types.
- `stats`: the one percentile definition (the client's summary and the lab's metrics agree).
"""
