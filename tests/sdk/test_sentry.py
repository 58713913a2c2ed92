"""The real Sentry SDK (`sentry-sdk`, pinned in requirements.txt), its DSN
pointed at scrim in front of a capture upstream that parses Sentry envelopes
the way Sentry's ingestion does.

The SDK must report no error (every response 200, nothing dropped or lost,
nothing logged at ERROR), the upstream must receive valid envelopes (gzip and
plain) whose items carry `k1_` pseudonyms where the user's email, id and IP
were, and none of the raw values (also lower-cased, percent-encoded,
JSON-escaped) anywhere: path, headers, item headers, payloads. The older store
endpoint, a malformed envelope (400, nothing forwarded) and `scrim check` of
the rule file are covered too.

Run through tests/sdk/run.sh. SCRIM_BIN names the scrim binary.
"""

import base64
import gzip as gzip_module
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest

# Imported unconditionally: a missing package is a failure, never a skip.
import requests
import sentry_sdk
from sentry_sdk.transport import HttpTransport

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import capture  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RULES = REPO / "rules" / "sentry.toml"

# --- the personal data the SDK is fed ------------------------------------------
NAME = "Søren Ødegård"
EMAIL = "soren@example.dk"
IP = "203.0.113.77"
USER_ID = "u-48213"
CHAT = "Please send the recording to soren@example.dk"
PAGE_URL = "https://webinar.example.com/w/42/join?email=soren%40example.dk&utm_source=newsletter"
ATTACHMENT = b"participant list: soren@example.dk, 203.0.113.77"
SESSION_COOKIE = "sess-6c1d9e"
BEARER = "Bearer tok-3f9a1c"

RAW_VALUES = [NAME, "Ødegård", EMAIL, "example.dk", IP, USER_ID, SESSION_COOKIE, "tok-3f9a1c"]

PUBLIC_KEY = "publickey" + secrets.token_hex(4)
PROJECT = "1"

TOKEN = re.compile(r"k1_[0-9a-v]{26}")
EMAIL_TOKEN = re.compile(r"^k1_[0-9a-v]{26}@pseudonym\.invalid$")

START_TIMEOUT = 30
FLUSH_TIMEOUT = 30
HTTP_TIMEOUT = 10


# --- helpers -------------------------------------------------------------------
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_for_port(port, proc, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("scrim exited with %s:\n%s" % (proc.returncode, tail(log_path)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail("scrim did not listen on %d:\n%s" % (port, tail(log_path)))


def spellings(value):
    base = {value, value.lower(), unicodedata.normalize("NFD", value)}
    out = set(base)
    for v in base:
        out.update({quote(v, safe=""), quote(v), quote_plus(v), json.dumps(v)[1:-1]})
    return {s.lower() for s in out}


def haystacks(entry):
    yield "path", entry["path"]
    for name, value in entry["headers"]:
        yield "header " + name, "%s: %s" % (name, value)
    if entry["body_text"] is not None:
        yield "body", entry["body_text"]
    if entry["json"] is not None:
        yield "json", json.dumps(entry["json"], ensure_ascii=False)
    if entry["envelope"] is not None:
        yield "envelope", json.dumps(entry["envelope"], ensure_ascii=False)
        yield "envelope(ascii)", json.dumps(entry["envelope"], ensure_ascii=True)


def assert_no_raw_values(entries, extra=()):
    needles = [(v, s) for v in RAW_VALUES + list(extra) for s in spellings(v)]
    leaks = set()
    for i, entry in enumerate(entries):
        for where, text in haystacks(entry):
            low = text.lower()
            for value, spelled in needles:
                if spelled in low:
                    leaks.add("request %d %s %s: %r as %r" % (i, entry["path"], where, value, spelled))
    assert not leaks, "raw personal values reached the upstream:\n" + "\n".join(sorted(leaks))


def header(entry, name):
    values = [v for k, v in entry["headers"] if k.lower() == name.lower()]
    return values[0] if values else None


def is_ip_token(s):
    """An IPv4 token of scrim: an address in reserved space, 240.0.0.0/4."""
    try:
        return ipaddress.ip_address(s) in ipaddress.ip_network("240.0.0.0/4")
    except ValueError:
        return False


class Recorder(logging.Handler):
    """Collects the SDK's log records: it reports transport failures there."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.logger = logging.getLogger("sentry_sdk.errors")

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)

    def emit(self, record):
        self.records.append(record)

    def errors(self):
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]


class RecordingTransport(HttpTransport):
    """The SDK's own HTTP transport, recording what it saw of each send."""

    statuses = []
    dropped = []
    lost = []
    sent_types = []

    def capture_envelope(self, envelope):
        RecordingTransport.sent_types.extend(item.type for item in envelope.items)
        return super().capture_envelope(envelope)

    def _handle_response(self, response, envelope):
        RecordingTransport.statuses.append(response.status)
        return super()._handle_response(response=response, envelope=envelope)

    def on_dropped_event(self, reason):
        RecordingTransport.dropped.append(reason)
        return super().on_dropped_event(reason)

    def record_lost_event(self, reason, data_category=None, item=None, *, quantity=1):
        RecordingTransport.lost.append((reason, data_category))
        return super().record_lost_event(reason, data_category, item, quantity=quantity)

    @classmethod
    def reset(cls):
        cls.statuses, cls.dropped, cls.lost, cls.sent_types = [], [], [], []


# --- the stack -----------------------------------------------------------------
class Stack:
    def __init__(self, port, capture_path, log_path):
        self.port = port
        self.base_url = "http://127.0.0.1:%d" % port
        self.dsn = "http://%s@127.0.0.1:%d/%s" % (PUBLIC_KEY, port, PROJECT)
        self.capture_path = capture_path
        self.log_path = log_path

    def mark(self):
        return len(capture.read_captured(self.capture_path))

    def since(self, mark):
        return capture.read_captured(self.capture_path)[mark:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    scrim_bin = Path(os.environ.get("SCRIM_BIN", REPO / "target" / "debug" / "scrim"))
    if not scrim_bin.is_file():
        pytest.fail("no scrim binary at %s (build it, or set SCRIM_BIN)" % scrim_bin)
    tmp = tmp_path_factory.mktemp("sentry")
    capture_path = tmp / "captured.jsonl"
    log_path = tmp / "scrim.log"
    server, upstream_port = capture.start(str(capture_path))
    port = free_port()
    rules = json.dumps(str(RULES))
    config = f"""
[[listener]]
addr = "127.0.0.1:{port}"

[upstream.sentry]
url = "http://127.0.0.1:{upstream_port}"
connect_timeout_ms = 2000
response_timeout_ms = 10000

# The SDKs' endpoint: the Content-Type (application/x-sentry-envelope) picks
# the envelope format.
[[route]]
path = "/api/{PROJECT}/envelope/"
methods = ["POST"]
upstream = "sentry"
rules = {rules}

# The older store endpoint: one JSON event, read as an envelope's event item.
[[route]]
path = "/api/{PROJECT}/store/"
methods = ["POST"]
upstream = "sentry"
rules = {rules}
body_format = "sentry-event"
"""
    config_path = tmp / "scrim.toml"
    config_path.write_text(config)
    env = dict(os.environ)
    env.update(
        SCRIM_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        SCRIM_KEY_VERSION="1",
        RUST_LOG=env.get("RUST_LOG", "info"),
    )
    log = open(log_path, "wb")
    proc = None
    try:
        proc = subprocess.Popen(
            [str(scrim_bin), "run", "-c", str(config_path), "--drain-secs", "2"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for_port(port, proc, log_path)
        yield Stack(port, capture_path, log_path)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
        server.shutdown()
        server.server_close()


# --- what a webinar backend reports ---------------------------------------------
def join_webinar(address, client_ip):
    # A fault in the webinar backend. Its message carries the caller's values.
    raise ValueError("cannot join webinar w-42 for %s from %s" % (address, client_ip))


def capture_fault():
    try:
        join_webinar(EMAIL, IP)
    except ValueError:
        return sentry_sdk.capture_exception()


def add_request(event, hint):
    """What a web framework integration adds: the request being served."""
    event["request"] = {
        "url": PAGE_URL,
        "method": "POST",
        "query_string": urlsplit(PAGE_URL).query,
        "headers": {
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Cookie": "session=" + SESSION_COOKIE,
            "Authorization": BEARER,
            "X-Forwarded-For": IP,
        },
        "cookies": {"session": SESSION_COOKIE},
        "data": {"name": NAME, "email": EMAIL},
        "env": {"REMOTE_ADDR": IP},
    }
    return event


def run_sdk(stack, compression_level):
    """Drives the SDK through one participant's failed join. Returns the event
    ids the SDK reported."""
    RecordingTransport.reset()
    experiments = {} if compression_level is None else {"transport_compression_level": compression_level}
    with Recorder() as logs:
        sentry_sdk.init(
            dsn=stack.dsn,
            transport=RecordingTransport,
            release="webinar-app@4.2.0",
            environment="production",
            # Collect everything the SDK can: scrim must cope with the worst.
            data_collection={"user_info": True},
            traces_sample_rate=1.0,
            shutdown_timeout=FLUSH_TIMEOUT,
            _experiments=experiments,
        )
        try:
            with sentry_sdk.isolation_scope() as scope:
                sentry_sdk.set_user({"id": USER_ID, "email": EMAIL, "ip_address": IP, "username": NAME})
                sentry_sdk.set_tag("webinar", "w-42")
                sentry_sdk.set_extra("participant", NAME)
                sentry_sdk.set_context("participant", {"name": NAME, "email": EMAIL})
                sentry_sdk.add_breadcrumb(
                    category="chat", message=CHAT, level="info", data={"email": EMAIL, "name": NAME}
                )
                scope.add_event_processor(add_request)
                scope.add_attachment(bytes=ATTACHMENT, filename="participants.txt", content_type="text/plain")
                scope.start_session(session_mode="application")
                ids = [capture_fault(), sentry_sdk.capture_message("Join failed for %s from %s" % (EMAIL, IP))]
                with sentry_sdk.start_transaction(op="webinar.join", name="/w/{id}/join"):
                    query = "SELECT * FROM participant WHERE email = '%s'" % EMAIL
                    with sentry_sdk.start_span(op="db.query", name=query):
                        pass
                scope.end_session()
                sentry_sdk.flush(timeout=FLUSH_TIMEOUT)
        finally:
            sentry_sdk.get_client().close(timeout=FLUSH_TIMEOUT)
    assert all(ids), "the SDK refused an event: %r" % ids
    assert not logs.errors(), "sentry_sdk logged errors: %r\nscrim:\n%s" % (logs.errors(), tail(stack.log_path))
    assert not RecordingTransport.dropped, "dropped: %r\nscrim:\n%s" % (RecordingTransport.dropped, tail(stack.log_path))
    assert not RecordingTransport.lost, "lost: %r\nscrim:\n%s" % (RecordingTransport.lost, tail(stack.log_path))
    assert RecordingTransport.statuses and set(RecordingTransport.statuses) == {200}, RecordingTransport.statuses
    return ids


def items_of(entries, encoding):
    """Every item the upstream received, after checking each request."""
    assert entries, "the upstream received nothing"
    items = []
    for e in entries:
        assert e["method"] == "POST"
        assert e["path"] == "/api/%s/envelope/" % PROJECT, e["path"]
        assert e["error"] is None, "the upstream could not read the envelope: %s" % e["error"]
        assert header(e, "content-type") == "application/x-sentry-envelope"
        assert e["encoding"] == encoding, "Content-Encoding %r, expected %r" % (e["encoding"], encoding)
        auth = header(e, "x-sentry-auth") or ""
        assert auth.startswith("Sentry ") and "sentry_key=%s" % PUBLIC_KEY in auth, auth
        env = e["envelope"]
        assert set(env["header"]) <= {"event_id", "sent_at", "dsn", "sdk", "trace"}, env["header"]
        for item in env["items"]:
            head = item["headers"]
            # Rebuilt headers: type, a length that frames the payload, and no more.
            assert set(head) <= {"type", "length", "content_type", "filename", "attachment_type"}, head
            assert head["length"] == len(item["payload"].encode("utf-8")), head
            items.append((env["header"], item))
    return items


@pytest.mark.parametrize("compression", ["gzip", "plain"])
def test_sentry_sdk_envelopes(stack, compression):
    """sentry-sdk: POST /api/1/envelope/, gzip (the SDK's default without
    brotli) or uncompressed; events, a transaction, a session, an attachment."""
    mark = stack.mark()
    ids = run_sdk(stack, None if compression == "gzip" else 0)
    entries = stack.since(mark)
    items = items_of(entries, "gzip" if compression == "gzip" else None)

    by_type = {}
    for env_header, item in items:
        by_type.setdefault(item["headers"]["type"], []).append((env_header, item["json"]))
    # The SDK sent the attachment with each event; it is opaque and no rule
    # keeps it: dropped whole.
    assert RecordingTransport.sent_types.count("attachment") == 2, RecordingTransport.sent_types
    assert "attachment" not in by_type, sorted(by_type)
    assert {"event", "transaction", "session"} <= set(by_type), sorted(by_type)
    assert set(by_type) <= {"event", "transaction", "session", "sessions", "client_report"}, sorted(by_type)

    events = {ev["event_id"]: (h, ev) for h, ev in by_type["event"]}
    assert sorted(events) == sorted(ids), "events lost or added"
    user_token = None
    email_token = None
    for event_id, (env_header, ev) in events.items():
        assert env_header["event_id"] == event_id
        assert env_header["trace"]["public_key"] == PUBLIC_KEY
        assert ev["release"] == "webinar-app@4.2.0" and ev["environment"] == "production"
        assert ev["platform"] == "python" and ev["sdk"]["name"] == "sentry.python"
        assert ev["tags"] == {"webinar": "w-42"}
        assert ev["contexts"]["runtime"]["name"] == "CPython"
        assert "participant" not in ev["contexts"] and "extra" not in ev and "server_name" not in ev
        user = ev["user"]
        assert set(user) == {"id", "email", "ip_address"}, user
        assert TOKEN.fullmatch(user["id"]) and EMAIL_TOKEN.match(user["email"]), user
        assert is_ip_token(user["ip_address"]), user
        assert user_token in (None, user["id"]) and email_token in (None, user["email"])
        user_token, email_token = user["id"], user["email"]
        crumb = ev["breadcrumbs"]["values"][0]
        assert crumb["category"] == "chat" and "data" not in crumb
        assert crumb["message"] == "Please send the recording to " + email_token
        req = ev["request"]
        assert set(req) == {"url", "method", "headers"}, req
        assert req["method"] == "POST"
        params = dict(parse_qsl(urlsplit(req["url"]).query))
        assert params == {"email": email_token}, req["url"]
        assert req["url"].startswith("https://webinar.example.com/w/42/join?")
        assert req["headers"] == {"User-Agent": "Firefox/121"}, req["headers"]

    exc_event = events[ids[0]][1]
    exc = exc_event["exception"]["values"][-1]
    assert exc["type"] == "ValueError"
    assert exc["value"].startswith("cannot join webinar w-42 for " + email_token + " from "), exc["value"]
    assert is_ip_token(exc["value"].rsplit(" ", 1)[1]), exc["value"]
    frames = exc["stacktrace"]["frames"]
    assert [f["function"] for f in frames][-2:] == ["capture_fault", "join_webinar"], frames
    for f in frames:
        assert "vars" not in f and f["filename"] and isinstance(f["lineno"], int), f
    assert "raise ValueError" in frames[-1]["context_line"]
    message = events[ids[1]][1]
    assert message["message"].startswith("Join failed for " + email_token + " from "), message["message"]

    (_, tx), = by_type["transaction"]
    assert tx["transaction"] == "/w/{id}/join" and tx["contexts"]["trace"]["op"] == "webinar.join"
    assert tx["user"]["id"] == user_token
    span = tx["spans"][0]
    assert span["op"] == "db.query"
    assert span["description"] == "SELECT * FROM participant WHERE email = '%s'" % email_token

    sessions = [s for _, s in by_type["session"]]
    for s in sessions:
        assert s["did"] == user_token, s  # the same pseudonym as user.id: users still count
        assert is_ip_token(s["attrs"]["ip_address"]) and s["attrs"]["release"] == "webinar-app@4.2.0", s
    assert sessions[-1]["status"] == "exited" and sessions[-1]["errors"] >= 1, sessions

    assert_no_raw_values(entries, extra=[ATTACHMENT.decode(), "participants.txt"])


def test_store_endpoint(stack):
    """The older store endpoint: one JSON event, the same rule file."""
    mark = stack.mark()
    event_id = uuid.uuid4().hex
    event = {
        "event_id": event_id,
        "timestamp": "2026-11-29T14:03:12Z",
        "platform": "python",
        "level": "error",
        "message": "Join failed for %s" % EMAIL,
        "user": {"id": USER_ID, "email": EMAIL, "ip_address": IP, "username": NAME},
        "request": {"url": PAGE_URL, "headers": {"Cookie": "session=" + SESSION_COOKIE}},
        "extra": {"participant": NAME},
    }
    auth = "Sentry sentry_key=%s, sentry_version=7, sentry_client=raven-python/6.10.0" % PUBLIC_KEY
    res = requests.post(
        stack.base_url + "/api/%s/store/" % PROJECT,
        data=gzip_module.compress(json.dumps(event).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "X-Sentry-Auth": auth},
        timeout=HTTP_TIMEOUT,
    )
    assert res.status_code == 200, res.text
    assert res.json() == {"id": event_id}
    (entry,) = stack.since(mark)
    assert entry["error"] is None and entry["encoding"] == "gzip"
    assert header(entry, "x-sentry-auth") == auth
    body = entry["json"]
    assert set(body) == {"event_id", "timestamp", "platform", "level", "message", "user", "request"}, body
    assert EMAIL_TOKEN.match(body["user"]["email"]) and TOKEN.fullmatch(body["user"]["id"])
    assert body["message"] == "Join failed for " + body["user"]["email"]
    assert "headers" not in body["request"], body["request"]
    assert_no_raw_values([entry])


def test_malformed_envelope_is_refused(stack):
    """An envelope whose item length runs past its end: 400, nothing forwarded."""
    mark = stack.mark()
    body = b'{"event_id":"%s"}\n{"type":"event","length":500}\n{"user":{"email":"%s"}}\n' % (
        uuid.uuid4().hex.encode(),
        EMAIL.encode(),
    )
    res = requests.post(
        stack.base_url + "/api/%s/envelope/" % PROJECT,
        data=body,
        headers={"Content-Type": "application/x-sentry-envelope"},
        timeout=HTTP_TIMEOUT,
    )
    assert res.status_code == 400, res.text
    assert set(res.json()) == {"error", "reason"} and "byte" in res.json()["reason"]
    assert EMAIL not in res.text
    assert stack.since(mark) == []


def test_rule_file_checks():
    scrim_bin = os.environ.get("SCRIM_BIN", str(REPO / "target" / "debug" / "scrim"))
    res = subprocess.run([scrim_bin, "check", str(RULES)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
