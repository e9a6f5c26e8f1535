"""UDP echo server in the shape of the classic socket tutorial, as the tutorial writes it.

Two things to notice: it binds to 127.0.0.1 (unreachable from other hosts), and it stops
when a datagram arrives empty, although an empty datagram is a perfectly valid message
(`tutorial-udp-empty` shows what that does to the clients that come after).
"""

import socket

HOST = "127.0.0.1"
PORT = 19200

server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((HOST, PORT))
print("waiting for datagrams on", (HOST, PORT), flush=True)

while True:
    data, address = server.recvfrom(1024)
    if not data:
        print("empty datagram from", address, "- stopping", flush=True)
        break
    print(address, "says", data.decode("utf-8"), flush=True)
    server.sendto(data, address)
server.close()
