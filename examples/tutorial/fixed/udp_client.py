"""The tutorial's UDP echo client, corrected for a network of hosts.

Usage: `udp_client.py [HOST [MESSAGE ...]]`. It sends to the server by name (default
`server`) instead of 127.0.0.1. Messages given on the command line replace the default
four; an empty argument (`""`) sends an empty datagram. A lost datagram is never resent:
after two seconds without an echo the client says so and goes on; it exits with status 1
if any message went without its echo.
"""

import socket
import sys
import time

HOST = sys.argv[1] if len(sys.argv) > 1 else "server"
PORT = 19200

messages = sys.argv[2:] or [time.asctime(), "Hello from the client", "你好，服务器", "再见"]

client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(2)
missing = 0
for message in messages:
    client.sendto(message.encode("utf-8"), (HOST, PORT))
    print("sent", repr(message), "from", client.getsockname(), flush=True)
    try:
        echo, address = client.recvfrom(1024)
    except (TimeoutError, ConnectionRefusedError) as exc:
        print("no echo:", exc, flush=True)
        missing += 1
        continue
    print("echo from", address, ":", echo.decode("utf-8"), flush=True)
client.close()
sys.exit(1 if missing else 0)
