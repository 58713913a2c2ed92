#!/usr/bin/env python3
"""A small HTTP/1.1 sink for the checks (not for the speed runs, where nginx
answers): it reads every request body in full (Content-Length or chunked),
answers 200 with keep-alive, and

  --record: keeps the bodies; GET /__dump returns them as a JSON list and
            forgets them (the sample a check looks at);
  always:   counts bytes and lines of each body and looks for the marker of a
            raw email (--raw-marker, default "@example.dk"); the answer to a
            request is {"bytes": .., "lines": .., "raw": ..}.

  --tls CERT KEY: speaks TLS (HTTP/1.1) with that certificate.

Loopback only. Usage: sink.py PORT[,PORT...] [--record] [--tls CERT KEY]
(several ports share what is recorded).
"""
import asyncio
import json
import ssl
import sys

RECORD = "--record" in sys.argv
PORTS = [int(p) for p in sys.argv[1].split(",")]
MARKER = b"@example.dk"
TLS = None
for i, a in enumerate(sys.argv):
    if a == "--raw-marker":
        MARKER = sys.argv[i + 1].encode()
    if a == "--tls":
        TLS = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        TLS.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])

recorded = []


async def read_body(reader, headers, sink):
    te = headers.get("transfer-encoding", "").lower()
    if "chunked" in te:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers until the empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            left = size
            while left:
                part = await reader.read(min(left, 1 << 20))
                if not part:
                    raise ConnectionError("eof in chunk")
                sink(part)
                left -= len(part)
            await reader.readexactly(2)
    else:
        left = int(headers.get("content-length", "0"))
        while left:
            part = await reader.read(min(left, 1 << 20))
            if not part:
                raise ConnectionError("eof in body")
            sink(part)
            left -= len(part)


async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for h in lines[1:]:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            stats = {"bytes": 0, "lines": 0, "raw": 0}
            tail = [b""]
            chunks = []

            def sink(part):
                stats["bytes"] += len(part)
                stats["lines"] += part.count(b"\n")
                # a marker split across two reads is still found
                stats["raw"] += (tail[0] + part).count(MARKER)
                tail[0] = part[-(len(MARKER) - 1):]
                if RECORD:
                    chunks.append(part)

            await read_body(reader, headers, sink)
            if target == "/__dump":
                out = json.dumps(recorded).encode()
                recorded.clear()
            else:
                if RECORD:
                    recorded.append({"path": target,
                                     "headers": headers,
                                     "body": b"".join(chunks).decode("utf-8", "replace")})
                out = json.dumps(stats).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(out) + out)
            await writer.drain()
    except Exception as e:  # a broken client: drop the connection
        print("sink:", type(e).__name__, e, file=sys.stderr)
    finally:
        writer.close()


async def main():
    servers = [await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096,
                                          limit=1 << 20, ssl=TLS)
               for port in PORTS]
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
