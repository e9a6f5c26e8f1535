"""The network-namespace helper of the lab's routers and route sidecars (stdlib only).

`python3 -m lab.netns` sets up the namespace it runs in (default routes through a router, NAT
rules of a router), says so in one `applied` record, touches its ready file and holds the
namespace until SIGTERM. It runs in helper containers with NET_ADMIN; the echo programs that
share the namespace never get that capability.
"""
