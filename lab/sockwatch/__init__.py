"""The socket-table watcher: a sidecar that shares a host's network namespace and records its
sockets (listening, connected, UDP) as they open and close. Standard library only, no
capability needed: `/proc/net/{tcp,tcp6,udp,udp6}` show the sockets of the reader's namespace.
"""
