"""The wire view: a run's packet capture, parsed into flows and joined with the two socket views.

The capture helper (`lab/capture`, inside the lab's network) writes `capture/lab.pcap` into the
run directory; this package reads it with dpkt, groups packets into flows per 5-tuple, matches
each application message with the packets that carried it, and writes `wire.json` (format and
columns: docs/wire.md), all as a stream: what it holds does not grow with the run's packets or
messages (docs/wire.md, "Memory"). Pure functions over files and records: no Docker here.
"""
