#!/usr/bin/env python3
"""Streams a generated NDJSON body of SIZE bytes (default 1 GiB) to scrim in
one chunked POST (Content-Type: application/x-ndjson), generated on the fly,
~1 KB webinar events, every line different. Prints what the sink answered
(bytes, lines and raw emails it saw) and the time taken.

  stream.py PORT PATH [SIZE]"""
import http.client
import json
import sys
import time

port, path = int(sys.argv[1]), sys.argv[2]
size = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 30

LINE = ('{"event":"webinar.attended","type":"track","message_id":"m-%d",'
        '"timestamp":"2024-05-14T09:%02d:%02d.000Z",'
        '"webinar":{"id":"wb-%d","title":"Quarterly product update for customers in the Nordics","language":"da"},'
        '"participant":{"name":"Anna %d Hansen","email":"anna.hansen.%d@example.dk","ip":"10.%d.%d.%d",'
        '"role":"attendee","registered_via":"landing-page"},'
        '"context":{"user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",'
        '"country":"DK","screen":"1920x1080","locale":"da-DK","timezone":"Europe/Copenhagen",'
        '"library":{"name":"webinar-sdk","version":"3.4.1"}},'
        '"properties":{"duration_s":%d,"feature":"chat","poll_id":"poll-%d","answer":"B",'
        '"questions_asked":2,"camera_on":true,"microphone_on":false,"reactions":5,'
        '"attention_score":0.87,"device_id":"d-%08x"},'
        '"internal":{"debug":"edge=cph-2 build=2024.05.1","trace_id":"%016x"}}\n')

sent = [0, 0]


def chunks():
    n = 0
    while sent[0] < size:
        buf = []
        blen = 0
        while blen < 256 * 1024 and sent[0] + blen < size:
            n += 1
            line = LINE % (n, n % 60, (n * 7) % 60, n % 500, n, n,
                           n % 256, (n >> 8) % 256, (n >> 16) % 256,
                           n % 3600, n % 40, n % (1 << 32), n)
            buf.append(line)
            blen += len(line)
        data = "".join(buf).encode()
        sent[0] += len(data)
        sent[1] = n
        yield data


t0 = time.monotonic()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
conn.request("POST", path, body=chunks(), encode_chunked=True,
             headers={"Content-Type": "application/x-ndjson"})
res = conn.getresponse()
answer = res.read()
dt = time.monotonic() - t0
print(json.dumps({"status": res.status, "sent_bytes": sent[0], "sent_lines": sent[1],
                  "seconds": round(dt, 1), "sink": answer.decode(errors="replace")}))
