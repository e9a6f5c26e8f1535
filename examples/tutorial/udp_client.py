"""UDP echo client in the shape of the classic socket tutorial, as the tutorial writes it.

It sends to 127.0.0.1, its own container in the lab. A datagram to a port where nothing
listens is simply dropped (or answered by an ICMP error), so without a timeout this client
would wait forever: it gives up after two seconds per message.
"""

import socket
import time

HOST = "127.0.0.1"
PORT = 19200

messages = [time.asctime(), "Hello from the client", "你好，服务器", "再见"]

client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(2)
for message in messages:
    client.sendto(message.encode("utf-8"), (HOST, PORT))
    print("sent from", client.getsockname(), flush=True)
    try:
        echo, address = client.recvfrom(1024)
    except (TimeoutError, ConnectionRefusedError) as exc:
        print("no echo:", exc, flush=True)
        continue
    print("echo from", address, ":", echo.decode("utf-8"), flush=True)
client.close()
