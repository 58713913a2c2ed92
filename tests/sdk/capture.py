"""A capture upstream: stands where the analytics vendor would, records what
arrives, and answers the way the vendor does.

Each request becomes one JSON line in the capture file:

    {"method", "path", "headers": [[name, value], ...], "encoding",
     "raw_len", "body_text", "json" (parsed body or null), "error" (or null),
     "envelope" (a parsed Sentry envelope or null),
     "form" (the [name, value] pairs of a form body, or null)}

The body is decoded (gzip, deflate, zstd when available) as the vendor would
decode it; `body_text` is the decoded text, `json` its parse. A body that does
not decode or parse is still recorded, with the reason in `error`, and gets a
400 like a vendor would give it. A Sentry envelope
(`Content-Type: application/x-sentry-envelope`) is parsed as Sentry's
ingestion parses it, strictly: see `parse_envelope`. A form body
(`application/x-www-form-urlencoded`) is parsed as Mixpanel parses it: its
`data` field, JSON text or base64 of JSON, is the `json` of the entry.

Run standalone: `python3 capture.py OUT.jsonl` prints `PORT` on stdout and
serves on 127.0.0.1 until killed. The test driver imports `start()` instead.
"""

import gzip
import json
import base64
import binascii
import re
import sys
import urllib.parse
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 * 1024 * 1024


def decode_body(raw, encoding):
    """The body as the vendor would read it, or raises ValueError."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return raw
    if enc in ("gzip", "x-gzip"):
        return gzip.decompress(raw)
    if enc == "deflate":
        # RFC 9110 deflate is zlib-wrapped; accept raw deflate as well.
        try:
            return zlib.decompress(raw)
        except zlib.error:
            return zlib.decompress(raw, -zlib.MAX_WBITS)
    if enc == "zstd":
        try:
            import zstandard  # optional
        except ImportError as e:
            raise ValueError("zstd body but no zstandard module") from e
        return zstandard.ZstdDecompressor().decompress(raw, max_output_size=MAX_BODY)
    raise ValueError("unknown content-encoding %r" % encoding)


ENVELOPE_TYPE = "application/x-sentry-envelope"
SENTRY_PATH = re.compile(r"^/api/[^/]+/(envelope|store)/$")
# Sentry item types whose payload is not JSON.
SENTRY_OPAQUE = {"attachment", "form_data", "replay_recording", "replay_video", "statsd", "unreal_report"}


def parse_envelope(data):
    """A Sentry envelope: a header line (a JSON object), then items, each an
    item header line (a JSON object with a string `type`) and a payload of
    `length` bytes followed by a newline or the end, or without `length` the
    rest of the line. JSON payloads must parse. Raises ValueError.

    Returns {"header": {...}, "items": [{"headers", "payload" (bytes),
    "json" (parsed payload, or None for opaque items)}]}."""

    def line(pos):
        nl = data.find(b"\n", pos)
        return (data[pos:], len(data)) if nl < 0 else (data[pos:nl], nl + 1)

    raw, pos = line(0)
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("the envelope header is not a JSON object")
    items = []
    while pos < len(data):
        raw, pos = line(pos)
        head = json.loads(raw)
        if not isinstance(head, dict) or not isinstance(head.get("type"), str):
            raise ValueError("item %d: the header has no type" % len(items))
        length = head.get("length")
        if length is None:
            payload, pos = line(pos)
        else:
            if not isinstance(length, int) or length < 0 or pos + length > len(data):
                raise ValueError("item %d: length %r runs past the end" % (len(items), length))
            payload, pos = data[pos : pos + length], pos + length
            if pos < len(data):
                if data[pos : pos + 1] != b"\n":
                    raise ValueError("item %d: payload longer than its length" % len(items))
                pos += 1
        content_type = (head.get("content_type") or "application/json").split(";")[0].strip()
        opaque = head["type"] in SENTRY_OPAQUE or not content_type.endswith("json")
        items.append(
            {
                "headers": head,
                "payload": payload,
                "json": None if opaque else json.loads(payload.decode("utf-8")),
            }
        )
    return {"header": header, "items": items}


FORM_TYPE = "application/x-www-form-urlencoded"
MIXPANEL_PATHS = {"/track", "/engage", "/groups", "/import"}


def parse_form(text):
    """The pairs of a form body, strictly: raises ValueError on a malformed one."""
    return [list(p) for p in urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))]


def mixpanel_data(value):
    """Mixpanel's `data` parameter: JSON text, or base64 of JSON (padding
    optional). Returns the parse; raises ValueError."""
    text = value.strip()
    if not text.startswith(("{", "[")):
        try:
            text = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ValueError("data is neither JSON nor base64: %s" % e) from e
    data = json.loads(text)
    if not isinstance(data, (dict, list)):
        raise ValueError("data is not a JSON object or array")
    return data


def vendor_response(path, body):
    """What the vendor answers on success, by endpoint."""
    if SENTRY_PATH.match(path):
        # Sentry: the id of the event received, if there was one.
        if path.endswith("/store/"):
            return {"id": body.get("event_id") if isinstance(body, dict) else None}
        event_id = body["header"].get("event_id") if isinstance(body, dict) else None
        return {"id": event_id} if event_id else {}
    if path.startswith("/i/v1/"):
        # PostHog capture v1: a result per event uuid.
        events = body.get("batch", []) if isinstance(body, dict) else []
        return {
            "results": {
                e["uuid"]: {"result": "ok"}
                for e in events
                if isinstance(e, dict) and isinstance(e.get("uuid"), str)
            }
        }
    if path.startswith("/v1/"):
        # Segment tracking API.
        return {"success": True}
    if path in MIXPANEL_PATHS:
        # Mixpanel ingestion with verbose=1.
        return {"status": 1, "error": None}
    if path == "/2/httpapi":
        # Amplitude HTTP V2.
        events = body.get("events", []) if isinstance(body, dict) else []
        return {"code": 200, "events_ingested": len(events), "payload_size_bytes": 0, "server_upload_time": 0}
    # PostHog /batch/, /capture/, /i/v0/e/.
    return {"status": 1}


class Capture:
    def __init__(self, out_path):
        self.out_path = out_path
        self.lock = threading.Lock()
        self.count = 0

    def record(self, entry):
        line = json.dumps(entry, ensure_ascii=False)
        with self.lock:
            with open(self.out_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.count += 1


def make_handler(capture):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # per-connection socket timeout: a stuck client cannot hold a thread

        def log_message(self, fmt, *args):  # quiet
            pass

        def _read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        # trailers until the empty line
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    total += size
                    if total > MAX_BODY:
                        raise ValueError("body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(n) if n else b""

        def _handle(self):
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "encoding": self.headers.get("Content-Encoding"),
                "raw_len": 0,
                "body_text": None,
                "json": None,
                "error": None,
                "envelope": None,
                "form": None,
            }
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            status = 200
            try:
                raw = self._read_body()
                entry["raw_len"] = len(raw)
                body = decode_body(raw, entry["encoding"])
                if ctype == ENVELOPE_TYPE:
                    # Attachments may be binary: the text is for leak checks.
                    entry["body_text"] = body.decode("utf-8", "replace")
                    envelope = parse_envelope(body)
                    for item in envelope["items"]:
                        item["payload"] = item["payload"].decode("utf-8", "replace")
                    entry["envelope"] = envelope
                elif ctype == FORM_TYPE:
                    entry["body_text"] = body.decode("utf-8")
                    entry["form"] = parse_form(entry["body_text"])
                    data = [v for k, v in entry["form"] if k == "data"]
                    if data:
                        entry["json"] = mixpanel_data(data[0])
                else:
                    entry["body_text"] = body.decode("utf-8")
                    if body:
                        entry["json"] = json.loads(entry["body_text"])
            except Exception as e:  # recorded, answered like a vendor would
                entry["error"] = "%s: %s" % (type(e).__name__, e)
                status = 400
            capture.record(entry)
            if status == 200:
                parsed = entry["json"] if entry["envelope"] is None else entry["envelope"]
                payload = vendor_response(self.path.split("?", 1)[0], parsed)
            else:
                payload = {"type": "validation_error", "detail": entry["error"]}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = _handle
        do_PUT = _handle
        do_GET = _handle

    return Handler


def start(out_path):
    """Starts the server on 127.0.0.1, port 0, in a daemon thread.
    Returns (server, port); stop with server.shutdown(); server.server_close()."""
    capture = Capture(out_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(capture))
    server.daemon_threads = True
    server.capture = capture
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    return server, server.server_address[1]


def read_captured(out_path):
    """All recorded requests, in arrival order."""
    try:
        with open(out_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: capture.py OUT.jsonl")
    srv, port = start(sys.argv[1])
    print(port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.shutdown()
        srv.server_close()
