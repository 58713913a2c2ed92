#!/usr/bin/env python3
"""Checks a sample of what the sink received from one peer.

  check.py pass|pseudo SINK_PORT MIN_COUNT [https]

Fetches (and clears) the bodies sink.py recorded. `pass`: every body is the
event as sent (raw email, every field). `pseudo`: every body carries the
name, email and IP as pseudonyms, no raw email, and none of the fields the
rules do not list. Exits 1 on the first body that fails, naming why (never
printing personal data beyond the generated test values)."""
import json
import re
import ssl
import sys
import urllib.request

mode, port, least = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# `https`: the sink speaks TLS with the run's own certificate (loopback).
https = sys.argv[4:] == ["https"]
ctx = ssl._create_unverified_context() if https else None
url = f"{'https' if https else 'http'}://127.0.0.1:{port}/__dump"
with urllib.request.urlopen(url, timeout=30, context=ctx) as r:
    bodies = json.load(r)

TOKEN = r"k1_[0-9a-v]{26}"
DROPPED = [("message_id",), ("webinar", "title"), ("participant", "registered_via"),
           ("context", "user_agent"), ("context", "library"),
           ("properties", "device_id"), ("internal",)]
KEPT = [("event",), ("type",), ("timestamp",), ("webinar", "id"), ("webinar", "language"),
        ("participant", "role"), ("context", "country"), ("context", "screen"),
        ("context", "locale"), ("context", "timezone"), ("properties", "duration_s"),
        ("properties", "feature"), ("properties", "poll_id"), ("properties", "answer"),
        ("properties", "questions_asked"), ("properties", "camera_on"),
        ("properties", "microphone_on"), ("properties", "reactions"),
        ("properties", "attention_score")]


def get(doc, path):
    for k in path:
        if not isinstance(doc, dict) or k not in doc:
            return None
        doc = doc[k]
    return doc


def fail(i, why):
    print(f"  FAIL body {i}: {why}")
    sys.exit(1)


if len(bodies) < least:
    print(f"  FAIL: the sink received {len(bodies)} bodies, expected at least {least}")
    sys.exit(1)
emails = set()
for i, b in enumerate(bodies):
    try:
        doc = json.loads(b["body"])
    except ValueError:
        fail(i, "not JSON")
    p = doc.get("participant") or {}
    if mode == "pass":
        if not re.fullmatch(r"[^\s@.]+\.[^\s@.]+\.\d+\.\d+@example\.dk", p.get("email", "")):
            fail(i, "the email is not the one sent")
        for path in DROPPED + KEPT:
            if get(doc, path) is None:
                fail(i, f"{'.'.join(path)} is missing")
    else:
        if "@example.dk" in b["body"]:
            fail(i, "a raw email reached the sink")
        if not re.fullmatch(TOKEN + r"@pseudonym\.invalid", p.get("email", "")):
            fail(i, "participant.email is not a pseudonym")
        if not re.fullmatch("Participant " + TOKEN, p.get("name", "")):
            fail(i, "participant.name is not a pseudonym")
        if not re.fullmatch(r"24\d\.\d+\.\d+\.\d+", p.get("ip", "")):
            fail(i, "participant.ip is not an IP token (240.0.0.0/4)")
        for path in DROPPED:
            if get(doc, path) is not None:
                fail(i, f"{'.'.join(path)} should have been dropped")
        for path in KEPT:
            if get(doc, path) is None:
                fail(i, f"{'.'.join(path)} should have been kept")
    emails.add(p.get("email"))
if len(emails) < len(bodies):
    print(f"  FAIL: {len(bodies)} bodies but only {len(emails)} distinct emails")
    sys.exit(1)
print(f"  ok: {len(bodies)} bodies checked ({mode}), {len(emails)} distinct emails")
