#!/usr/bin/env python3
"""Opens N keep-alive connections to scrim, sends one pseudonymising request
on each (so each connection is a served, idle keep-alive connection), then
holds them all open until stdin closes or a line arrives.

  conns.py PORT PATH N"""
import json
import socket
import sys

port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
socks = []
ok = 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({
        "event": "webinar.attended", "type": "track",
        "participant": {"name": f"Idle Person {i}", "email": f"idle.person.{i}@example.dk",
                        "ip": f"10.1.{i // 256}.{i % 256}", "role": "attendee"},
        "context": {"country": "DK", "user_agent": "x" * 400},
        "properties": {"duration_s": i, "device_id": "d" * 300},
    }).encode()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body)) + body)
    socks.append(s)
for s in socks:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    if head.startswith(b"HTTP/1.1 200"):
        ok += 1
    # drain the body by Content-Length, so the connection is idle
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        rest += s.recv(65536)
print(f"open={len(socks)} ok={ok}", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
