"""TCP echo server in the shape of the classic socket tutorial, as the tutorial writes it.

It binds to 127.0.0.1, so only programs on the same host (the same container, in the lab)
can reach it: clients in other containers get "connection refused". The lab's
`tutorial-as-written` scenario runs it to show that mistake; `fixed/tcp_server.py` is the
corrected program.
"""

import socket
import time

HOST = "127.0.0.1"
PORT = 19200

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((HOST, PORT))
server.listen(100)
print("waiting for connections on", (HOST, PORT), flush=True)

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
