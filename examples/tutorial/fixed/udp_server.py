"""The tutorial's UDP echo server with its address corrected: it binds to every address.

It keeps the tutorial's other habit on purpose: it stops at the first empty datagram,
although an empty datagram is a valid message. The `tutorial-udp-empty` scenario shows
what that does to every client that comes after.
"""

import socket

HOST = ""  # every address of this host, not just loopback
PORT = 19200

server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((HOST, PORT))
print("waiting for datagrams on", server.getsockname(), flush=True)

while True:
    data, address = server.recvfrom(1024)
    if not data:
        print("empty datagram from", address, "- stopping", flush=True)
        break
    print(address, "says", data.decode("utf-8"), flush=True)
    server.sendto(data, address)
server.close()
