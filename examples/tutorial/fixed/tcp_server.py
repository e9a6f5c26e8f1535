"""The tutorial's TCP echo server, corrected for a network of hosts.

One change from `../tcp_server.py`: it binds to all addresses (`""`, that is 0.0.0.0), so
clients in other containers can connect. It still serves one client at a time, as the
tutorial's does: a second client waits in the listen backlog until the first one leaves.
"""

import socket
import time

HOST = ""  # every address of this host, not just loopback
PORT = 19200

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((HOST, PORT))
server.listen(100)
print("waiting for connections on", server.getsockname(), flush=True)

while True:
    conn, address = server.accept()
    print("connected by", address, flush=True)
    while True:
        data = conn.recv(1024)
        if not data:
            break
        print(address, "says", data.decode("utf-8"), flush=True)
        conn.send(data)
        time.sleep(0.5)
    conn.close()
    print("closed", address, flush=True)
