"""TCP echo client in the shape of the classic socket tutorial, as the tutorial writes it.

It connects to 127.0.0.1: on one laptop that is the server, but in the lab each program
has its own host, and 127.0.0.1 is the client's own container, where nothing listens.
`fixed/tcp_client.py` connects to the server by name instead.
"""

import socket
import time

HOST = "127.0.0.1"
PORT = 19200

messages = [time.asctime(), "Hello from the client", "你好，服务器", "再见"]

client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.connect((HOST, PORT))
print("connected from", client.getsockname(), "to", client.getpeername(), flush=True)
for message in messages:
    client.send(message.encode("utf-8"))
    echo = client.recv(1024)
    print("echo:", echo.decode("utf-8"), flush=True)
client.close()
