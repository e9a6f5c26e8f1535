"""The tutorial's TCP echo client, corrected for a network of hosts.

One change from `../tcp_client.py`: it connects to the server by name (first argument,
default `server`, the name the lab gives the server host) instead of 127.0.0.1.
"""

import socket
import sys
import time

HOST = sys.argv[1] if len(sys.argv) > 1 else "server"
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
