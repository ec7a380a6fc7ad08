# One connection after another to 127.0.0.1:PORT: send "ping\n" (after a v1 PROXY
# header in MODE header), read until the echo ends in it, close.
# usage: client.py PORT N MODE   MODE: plain | header; WAIT=1 env: pause 20 ms before sending
import os, socket, sys, time
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
wait = os.environ.get("WAIT") == "1"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"ping\n"
    if mode == "header":
        sp = s.getsockname()[1]
        msg = b"PROXY TCP4 192.0.2.9 127.0.0.1 %d %d\r\n" % (sp, port) + msg
    if wait:
        time.sleep(0.02)
    s.sendall(msg)
    got = b""
    while not got.endswith(b"ping\n"):
        d = s.recv(100)
        if not d: break
        got += d
    assert got.endswith(b"ping\n"), got
    s.close()
