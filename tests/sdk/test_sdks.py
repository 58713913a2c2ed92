"""Real third-party client SDKs, pointed at scrim in front of a capture upstream.

For each SDK: its requests must be accepted (the SDK reports success, no
error callback, no error log), arrive at the upstream valid (decodable,
parseable JSON of the shape the vendor expects), and carry none of the raw
personal values we fed it (name, email, IP; also lower-cased, percent-encoded,
JSON-escaped) in the path, the headers or the body, while pseudonyms (`k1_`
tokens) stand where the values were.

Run through tests/sdk/run.sh (venv, pinned packages, scrim build). SCRIM_BIN
names the scrim binary (default target/debug/scrim).
"""

import base64
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest

# The SDKs are imported unconditionally: a missing package is a failure, never a skip.
import requests
from amplitude import Amplitude, BaseEvent, EventOptions, Identify
from amplitude import Config as AmplitudeConfig
from amplitude.constants import SDK_VERSION as AMPLITUDE_VERSION
from mixpanel import BufferedConsumer, Consumer, Mixpanel
from mixpanel import __version__ as MIXPANEL_VERSION
from posthog import Posthog
from posthog.version import VERSION as POSTHOG_VERSION
from segment.analytics.client import Client as SegmentClient
from segment.analytics.version import VERSION as SEGMENT_VERSION
from snowplow_tracker import (
    Emitter,
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)
from snowplow_tracker._version import __version__ as SNOWPLOW_VERSION

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RULES = REPO / "rules"
sys.path.insert(0, str(HERE))
import capture  # noqa: E402

pytestmark = pytest.mark.timeout(120)

# --- the personal data every SDK is fed ----------------------------------------
NAME = "Søren Ødegård"
EMAIL = "soren@example.dk"
IP = "203.0.113.77"
CHAT = "Hi! Could you send the slides to soren@example.dk after the webinar?"
PAGE_URL = "https://webinar.example.com/w/42?email=soren%40example.dk&utm_source=newsletter"
REFERRER = "https://mail.example.com/inbox?name=S%C3%B8ren+%C3%98deg%C3%A5rd&utm_medium=email"
ANON_ID = "anon-3f2a9c"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"

# Values that must not reach the upstream in any spelling.
RAW_VALUES = [NAME, "Ødegård", EMAIL, "example.dk", IP]

TOKEN = re.compile(r"k1_[0-9a-v]{26}")
EMAIL_TOKEN = re.compile(r"^k1_[0-9a-v]{26}@pseudonym\.invalid$")
HOUR = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:00:00Z$")

# Keys: what the clients hold, and what scrim injects (the clients never see the latter).
POSTHOG_CLIENT_KEY = "phc_client_side_placeholder"
POSTHOG_V1_CLIENT_KEY = "phc_client_side_placeholder_v1"
POSTHOG_PROJECT_KEY = "phc_injected_by_scrim_" + secrets.token_hex(8)
SEGMENT_CLIENT_KEY = "segment_client_side_placeholder"
SEGMENT_WRITE_KEY = "seg_injected_by_scrim_" + secrets.token_hex(8)
MIXPANEL_TOKEN = "mp_project_token_placeholder"  # the project token, required in the message
MIXPANEL_CLIENT_KEY = "mp_client_api_key_placeholder"
MIXPANEL_CLIENT_SECRET = "mp_client_secret_placeholder"
MIXPANEL_IMPORT_BASIC = base64.b64encode(("sa_injected_by_scrim:" + secrets.token_hex(8)).encode()).decode()
AMPLITUDE_KEY = "amp_project_key_placeholder"  # the project key, required in the body
SNOWPLOW_CONSENT = "consent_analytics=granted"  # the cookie rules/snowplow.toml reads

START_TIMEOUT = 30  # s for scrim to listen
FLUSH_TIMEOUT = 30  # s for an SDK to flush and shut down
HTTP_TIMEOUT = 10  # s, each SDK request


# --- helpers -------------------------------------------------------------------
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_str(s):
    # A JSON string is a valid TOML basic string for the paths used here.
    return json.dumps(str(s))


def wait_for_port(port, proc, log_path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("scrim exited with %s before listening:\n%s" % (proc.returncode, tail(log_path)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail("scrim did not listen on %d within %ss:\n%s" % (port, timeout, tail(log_path)))


def tail(path, n=40):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def bounded(fn, seconds, what):
    """Runs fn in a thread; fails the test if it does not return in time."""
    result = {}

    def run():
        try:
            fn()
        except BaseException as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail("%s did not finish within %ss" % (what, seconds))
    if "error" in result:
        raise result["error"]


def spellings(value):
    """The ways a value may be written down: as is, lower-cased, Unicode
    decomposed, percent-encoded (both flavours), JSON-escaped."""
    base = {value, value.lower(), unicodedata.normalize("NFD", value)}
    out = set(base)
    for v in base:
        out.add(quote(v, safe=""))
        out.add(quote(v))
        out.add(quote_plus(v))
        out.add(json.dumps(v)[1:-1])  # ASCII-escaped, as json.dumps writes it
    return {s.lower() for s in out}


BASE64ISH = re.compile(r"^[A-Za-z0-9+/_-]{8,}={0,2}$")


def unwrap(text, depth=0):
    """`text` and what hides inside it, recursively: URL query and form
    values, JSON strings and keys, base64 and base64url of UTF-8 text."""
    yield text
    if depth > 6 or not text:
        return
    inner = []
    if "=" in text:
        query = urlsplit(text).query if "?" in text else text
        inner += [x for kv in parse_qsl(query, keep_blank_values=True) for x in kv]
    try:
        inner += list(json_strings(json.loads(text)))
    except ValueError:
        pass
    t = text.strip()
    if BASE64ISH.match(t):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                inner.append(decode(t + "=" * (-len(t) % 4)).decode("utf-8"))
            except ValueError:
                pass
    for i in inner:
        if i != text:
            yield from unwrap(i, depth + 1)


def json_strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from json_strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from json_strings(x)


def haystacks(entry):
    """Every place a value could hide in one captured request, and inside
    each: queries, form fields, JSON strings, base64."""
    for view in unwrap(entry["path"]):
        yield "path", view
    for name, value in entry["headers"]:
        yield "header " + name, "%s: %s" % (name, value)
        for word in value.split():  # `Basic <base64>`, `Bearer <token>`
            for view in unwrap(word):
                yield "header " + name, view
    if entry["body_text"] is not None:
        for view in unwrap(entry["body_text"]):
            yield "body", view
    if entry["json"] is not None:
        yield "json", json.dumps(entry["json"], ensure_ascii=False)
        yield "json(ascii)", json.dumps(entry["json"], ensure_ascii=True)


def assert_no_raw_values(entries, extra=()):
    leaks = []
    needles = [(v, s) for v in list(RAW_VALUES) + list(extra) for s in spellings(v)]
    for i, entry in enumerate(entries):
        for where, text in haystacks(entry):
            low = text.lower()
            for value, spelled in needles:
                if spelled in low:
                    leaks.append("request %d %s %s: %r as %r" % (i, entry["path"], where, value, spelled))
    assert not leaks, "raw personal values reached the upstream:\n" + "\n".join(sorted(set(leaks)))


def header(entry, name):
    values = [v for k, v in entry["headers"] if k.lower() == name.lower()]
    return values[0] if values else None


def assert_valid(entries, path, encoding):
    assert entries, "the upstream received no request on %s" % path
    for e in entries:
        assert e["method"] == "POST"
        assert e["path"] == path, e["path"]
        assert e["error"] is None, "the upstream could not read the body: %s" % e["error"]
        assert isinstance(e["json"], dict), "body is not a JSON object: %r" % e["body_text"]
        assert (header(e, "content-type") or "").startswith("application/json")
        assert e["encoding"] == encoding, "Content-Encoding %r, expected %r" % (e["encoding"], encoding)
        assert TOKEN.search(e["body_text"]), "no k1_ pseudonym in the body"


class LogRecorder(logging.Handler):
    """Collects an SDK's log records (it reports upload failures there too)."""

    def __init__(self, logger_name):
        super().__init__(logging.DEBUG)
        self.records = []
        self.logger = logging.getLogger(logger_name)
        self.old_level = self.logger.level

    def __enter__(self):
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old_level)

    def listen(self):
        """Debug level again: SDK clients set their logger's level when built."""
        self.logger.setLevel(logging.DEBUG)

    def emit(self, record):
        self.records.append(record)

    def errors(self):
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]

    def messages(self):
        return [r.getMessage() for r in self.records]


# --- the stack: capture upstream and scrim --------------------------------------
class Stack:
    def __init__(self, base_url, capture_path, log_path):
        self.base_url = base_url
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
    tmp = tmp_path_factory.mktemp("sdk")
    capture_path = tmp / "captured.jsonl"
    log_path = tmp / "scrim.log"
    server, upstream_port = capture.start(str(capture_path))
    port = free_port()
    upstream = "http://127.0.0.1:%d" % upstream_port
    timeouts = "connect_timeout_ms = 2000\nresponse_timeout_ms = 10000\n"
    mixpanel_routes = "".join(
        f"""
[[route]]
path = "{path}"
methods = ["GET", "POST"]
upstream = "mixpanel"
rules = {toml_str(RULES / "mixpanel.toml")}
"""
        for path in ("/track", "/engage", "/groups")
    )
    config = f"""
[[listener]]
addr = "127.0.0.1:{port}"

[upstream.posthog]
url = "{upstream}"
{timeouts}
[upstream.posthog_v1]
url = "{upstream}"
{timeouts}headers = {{ "Authorization" = "Bearer ${{SDK_TEST_POSTHOG_PROJECT_KEY}}" }}

[upstream.segment]
url = "{upstream}"
{timeouts}headers = {{ "Authorization" = "Basic ${{SDK_TEST_SEGMENT_BASIC}}" }}

[upstream.mixpanel]
url = "{upstream}"
{timeouts}
[upstream.mixpanel_import]
url = "{upstream}"
{timeouts}headers = {{ "Authorization" = "Basic ${{SDK_TEST_MIXPANEL_IMPORT_BASIC}}" }}

[upstream.amplitude]
url = "{upstream}"
{timeouts}
[upstream.snowplow]
url = "{upstream}"
{timeouts}

[[route]]
path = "/batch/"
methods = ["POST"]
upstream = "posthog"
rules = {toml_str(RULES / "posthog.toml")}

[[route]]
path = "/i/v1/analytics/events"
methods = ["POST"]
upstream = "posthog_v1"
rules = {toml_str(RULES / "posthog.toml")}

[[route]]
path = "/v1/batch"
methods = ["POST"]
upstream = "segment"
rules = {toml_str(RULES / "segment.toml")}

# analytics.js's single-message endpoint, posted by sendBeacon as text/plain
[[route]]
path = "/v1/t"
methods = ["POST"]
upstream = "segment"
rules = {toml_str(RULES / "segment.toml")}
body_format = "json"

[[route]]
path = "/import"
methods = ["POST"]
upstream = "mixpanel_import"
rules = {toml_str(RULES / "mixpanel.toml")}
{mixpanel_routes}
[[route]]
path = "/2/httpapi"
methods = ["POST"]
upstream = "amplitude"
rules = {toml_str(RULES / "amplitude.toml")}

[[route]]
path = "/i"
methods = ["GET"]
upstream = "snowplow"
rules = {toml_str(RULES / "snowplow.toml")}

[[route]]
path = "/com.snowplowanalytics.snowplow/tp2"
methods = ["POST"]
upstream = "snowplow"
rules = {toml_str(RULES / "snowplow.toml")}
"""
    config_path = tmp / "scrim.toml"
    config_path.write_text(config)
    env = dict(os.environ)
    env.update(
        SCRIM_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        SCRIM_KEY_VERSION="1",
        SDK_TEST_POSTHOG_PROJECT_KEY=POSTHOG_PROJECT_KEY,
        SDK_TEST_SEGMENT_BASIC=base64.b64encode((SEGMENT_WRITE_KEY + ":").encode()).decode(),
        SDK_TEST_MIXPANEL_IMPORT_BASIC=MIXPANEL_IMPORT_BASIC,
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
        wait_for_port(port, proc, log_path, START_TIMEOUT)
        yield Stack("http://127.0.0.1:%d" % port, capture_path, log_path)
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


# --- PostHog -------------------------------------------------------------------
def drive_posthog(client):
    """What a webinar backend sends PostHog about one participant. Returns the
    uuids the SDK reported for the calls it accepted."""
    uuids = [
        client.capture(
            "webinar_joined",
            distinct_id=EMAIL,
            properties={
                "$ip": IP,
                "$current_url": PAGE_URL,
                "webinar_id": "w-42",
                "name": NAME,
                "email": EMAIL,
                "$set": {"email": EMAIL, "name": NAME, "plan": "pro"},
                "$set_once": {"first_webinar": "w-42"},
            },
        ),
        client.capture(
            "chat_question_asked",
            distinct_id=EMAIL,
            properties={"$ip": IP, "webinar_id": "w-42", "message": CHAT},
        ),
        client.set(distinct_id=EMAIL, properties={"name": NAME, "email": EMAIL, "plan": "pro"}),
        client.set_once(distinct_id=EMAIL, properties={"first_webinar": "w-42"}),
        client.alias(previous_id=ANON_ID, distinct_id=EMAIL),
        client.capture(
            "webinar_left",
            distinct_id=EMAIL,
            properties={"$ip": IP, "webinar_id": "w-42", "duration_s": 1834},
        ),
    ]
    return uuids


def run_posthog(stack, **options):
    errors = []
    with LogRecorder("posthog") as logs:
        client = Posthog(
            host=stack.base_url,
            on_error=lambda e, batch: errors.append(e),
            flush_at=100,
            flush_interval=0.2,
            max_retries=0,
            timeout=HTTP_TIMEOUT,
            **options,
        )
        logs.listen()
        try:
            uuids = drive_posthog(client)
            bounded(lambda: client.flush(timeout_seconds=FLUSH_TIMEOUT), FLUSH_TIMEOUT + 5, "posthog flush")
        finally:
            bounded(client.shutdown, FLUSH_TIMEOUT, "posthog shutdown")
    assert all(uuids), "the SDK refused a call: %r" % uuids
    assert not errors, "posthog on_error: %r\nscrim:\n%s" % (errors, tail(stack.log_path))
    assert not logs.errors(), "posthog logged errors: %r\nscrim:\n%s" % (logs.errors(), tail(stack.log_path))
    return uuids, logs


def check_posthog_events(events, uuids):
    by_event = {}
    for ev in events:
        by_event.setdefault(ev["event"], []).append(ev)
    assert sorted(ev["uuid"] for ev in events) == sorted(uuids), "events lost or added"
    assert set(by_event) == {
        "webinar_joined",
        "chat_question_asked",
        "$set",
        "$set_once",
        "$create_alias",
        "webinar_left",
    }
    person = by_event["webinar_joined"][0]["distinct_id"]
    assert TOKEN.fullmatch(person), person
    for ev in events:
        assert HOUR.match(ev["timestamp"]), ev["timestamp"]
        props = ev["properties"]
        assert props.get("$lib") == "posthog-python"
        assert props.get("$lib_version") == POSTHOG_VERSION
        if ev["event"] != "$create_alias":
            # One person, one token: funnels and profiles still join.
            assert ev["distinct_id"] == person, ev
        if "$ip" in props:
            assert props["$ip"] == "203.0.113.0"
    joined = by_event["webinar_joined"][0]["properties"]
    assert joined["webinar_id"] == "w-42"
    assert EMAIL_TOKEN.match(joined["email"]), joined["email"]
    assert TOKEN.search(joined["name"]) and joined["name"].startswith("Participant k1_")
    assert "utm_source=newsletter" in joined["$current_url"]
    assert EMAIL_TOKEN.match(joined["$set"]["email"])
    assert joined["$set"]["plan"] == "pro"
    assert joined["$set_once"] == {"first_webinar": "w-42"}
    chat = by_event["chat_question_asked"][0]["properties"]["message"]
    assert chat.startswith("Hi! Could you send the slides to k1_") and "@pseudonym.invalid" in chat, chat
    assert by_event["webinar_left"][0]["properties"]["duration_s"] == 1834
    alias = by_event["$create_alias"][0]
    assert alias["properties"]["alias"] == person
    assert TOKEN.fullmatch(alias["distinct_id"]) and alias["distinct_id"] != person
    assert alias["properties"]["distinct_id"] == alias["distinct_id"]
    return by_event


def test_posthog_batch_gzip(stack):
    """posthog, default capture (v0): POST /batch/, gzip, api_key in the body."""
    mark = stack.mark()
    uuids, logs = run_posthog(stack, project_api_key=POSTHOG_CLIENT_KEY, gzip=True)
    assert any("data uploaded successfully" in m for m in logs.messages())

    entries = stack.since(mark)
    assert_valid(entries, "/batch/", "gzip")
    events = []
    for e in entries:
        body = e["json"]
        assert set(body) <= {"api_key", "batch", "historical_migration", "sent_at"}, set(body)
        assert body["api_key"] == POSTHOG_CLIENT_KEY  # the project key PostHog needs
        assert body["historical_migration"] is False
        assert HOUR.match(body["sent_at"]), body["sent_at"]
        assert isinstance(body["batch"], list) and body["batch"]
        events += body["batch"]
    by_event = check_posthog_events(events, uuids)
    # v0 keeps $set/$set_once of set() at the top level.
    set_ev = by_event["$set"][0]
    assert EMAIL_TOKEN.match(set_ev["$set"]["email"])
    assert set_ev["$set"]["name"].startswith("Person k1_")
    assert set_ev["$set"]["plan"] == "pro"
    assert by_event["$set_once"][0]["$set_once"] == {"first_webinar": "w-42"}
    # Operating-system details of the server: not dropped by accident.
    assert "$os" in by_event["webinar_joined"][0]["properties"]
    assert_no_raw_values(entries)


def test_posthog_capture_v1_deflate(stack):
    """posthog, capture v1: POST /i/v1/analytics/events, zlib deflate, the key
    as a Bearer header that scrim replaces with the injected project key."""
    mark = stack.mark()
    uuids, _ = run_posthog(
        stack,
        project_api_key=POSTHOG_V1_CLIENT_KEY,
        capture_mode="v1",
        capture_compression="deflate",
    )
    entries = stack.since(mark)
    assert_valid(entries, "/i/v1/analytics/events", "deflate")
    events = []
    for e in entries:
        assert header(e, "authorization") == "Bearer " + POSTHOG_PROJECT_KEY
        assert header(e, "posthog-sdk-info") == "posthog-python/" + POSTHOG_VERSION
        assert header(e, "posthog-attempt") == "1"
        assert HOUR.match(header(e, "posthog-request-timestamp") or "")
        body = e["json"]
        assert set(body) <= {"created_at", "batch", "historical_migration"}, set(body)
        assert HOUR.match(body["created_at"]), body["created_at"]
        for ev in body["batch"]:
            assert isinstance(ev["options"], dict)
            # the SDK moves $lib into the PostHog-Sdk-Info header in v1
            ev["properties"].setdefault("$lib", "posthog-python")
            ev["properties"].setdefault("$lib_version", POSTHOG_VERSION)
        events += body["batch"]
    by_event = check_posthog_events(events, uuids)
    # v1 carries set()'s person properties inside properties.
    set_props = by_event["$set"][0]["properties"]["$set"]
    assert EMAIL_TOKEN.match(set_props["email"]) and set_props["plan"] == "pro"
    assert_no_raw_values(entries, extra=[POSTHOG_V1_CLIENT_KEY])


# --- Segment -------------------------------------------------------------------
def drive_segment(client):
    return [
        client.identify(
            EMAIL,
            {"name": NAME, "email": EMAIL, "plan": "pro", "createdAt": "2026-03-04T10:11:12Z"},
            context={"ip": IP, "locale": "da-DK"},
            anonymous_id=ANON_ID,
        ),
        client.track(
            EMAIL,
            "Webinar Joined",
            {"webinar_id": "w-42", "name": NAME, "email": EMAIL},
            context={"ip": IP},
        ),
        client.track(EMAIL, "Chat Question Asked", {"webinar_id": "w-42", "message": CHAT}, context={"ip": IP}),
        client.page(
            EMAIL,
            "Webinar",
            "Live room",
            {"url": PAGE_URL, "path": "/w/42"},
            context={"ip": IP},
        ),
        client.alias(ANON_ID, EMAIL),
        client.track(EMAIL, "Webinar Left", {"webinar_id": "w-42", "duration_s": 1834}, context={"ip": IP}),
    ]


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_batch(stack, gzip):
    """segment-analytics-python: POST /v1/batch, JSON (gzip optional), the
    write key in the body and as Basic auth; scrim drops both and injects its own."""
    mark = stack.mark()
    errors = []
    with LogRecorder("segment") as logs:
        client = SegmentClient(
            SEGMENT_CLIENT_KEY,
            host=stack.base_url,
            on_error=lambda e, batch: errors.append(e),
            gzip=gzip,
            max_retries=0,
            timeout=HTTP_TIMEOUT,
            upload_interval=0.2,
            max_total_backoff_duration=5,
            max_rate_limit_duration=5,
        )
        logs.listen()
        try:
            results = drive_segment(client)
            bounded(client.flush, FLUSH_TIMEOUT, "segment flush")
        finally:
            bounded(client.shutdown, FLUSH_TIMEOUT, "segment shutdown")
    assert all(ok for ok, _ in results), "the SDK refused a call: %r" % results
    assert not errors, "segment on_error: %r\nscrim:\n%s" % (errors, tail(stack.log_path))
    assert not logs.errors(), "segment logged errors: %r\nscrim:\n%s" % (logs.errors(), tail(stack.log_path))
    assert any("data uploaded successfully" in m for m in logs.messages())

    entries = stack.since(mark)
    assert_valid(entries, "/v1/batch", "gzip" if gzip else None)
    sent = {msg["messageId"]: msg for _, msg in results}
    messages = []
    for e in entries:
        expected = "Basic " + base64.b64encode((SEGMENT_WRITE_KEY + ":").encode()).decode()
        assert header(e, "authorization") == expected
        body = e["json"]
        assert set(body) == {"batch", "sentAt"}, set(body)  # writeKey dropped
        assert HOUR.match(body["sentAt"]), body["sentAt"]
        messages += body["batch"]
    assert sorted(m["messageId"] for m in messages) == sorted(sent), "messages lost or added"

    by_type = {}
    for m in messages:
        by_type.setdefault(m["type"], []).append(m)
        assert HOUR.match(m["timestamp"]), m["timestamp"]
        assert m["context"]["library"] == {"name": "analytics-python", "version": SEGMENT_VERSION}
        if "ip" in m["context"]:
            assert m["context"]["ip"] == "203.0.113.0"
    assert sorted(by_type) == ["alias", "identify", "page", "track"]
    person = by_type["identify"][0]["userId"]
    assert TOKEN.fullmatch(person)
    anon = by_type["identify"][0]["anonymousId"]
    assert TOKEN.fullmatch(anon) and anon != person
    for m in messages:
        assert m["userId"] == person, m
    alias = by_type["alias"][0]
    assert alias["previousId"] == anon
    traits = by_type["identify"][0]["traits"]
    assert EMAIL_TOKEN.match(traits["email"]) and traits["name"].startswith("Person k1_")
    assert traits["plan"] == "pro" and traits["createdAt"] == "2026-03-04T00:00:00Z"
    assert by_type["identify"][0]["context"]["locale"] == "da-DK"
    tracks = {m["event"]: m for m in by_type["track"]}
    assert sorted(tracks) == ["Chat Question Asked", "Webinar Joined", "Webinar Left"]
    joined = tracks["Webinar Joined"]["properties"]
    assert EMAIL_TOKEN.match(joined["email"]) and joined["name"].startswith("Participant k1_")
    chat = tracks["Chat Question Asked"]["properties"]["message"]
    assert chat.startswith("Hi! Could you send the slides to k1_") and "@pseudonym.invalid" in chat, chat
    assert tracks["Webinar Left"]["properties"] == {"webinar_id": "w-42", "duration_s": 1834}
    page = by_type["page"][0]
    assert page["name"] == "Live room" and page["category"] == "Webinar"
    assert page["properties"]["path"] == "/w/42" and "utm_source=newsletter" in page["properties"]["url"]
    assert_no_raw_values(entries, extra=[SEGMENT_CLIENT_KEY])


# --- Segment from a browser: sendBeacon ------------------------------------------
def test_segment_beacon_text_plain(stack):
    """analytics.js hands a message to navigator.sendBeacon, which posts it as
    text/plain; the route's `body_format = "json"` reads it as the JSON it is.
    The vendor gets the content type it was sent and JSON it can parse."""
    mark = stack.mark()
    message = {
        "type": "track",
        "event": "Webinar Left",
        "messageId": "ajs-next-" + secrets.token_hex(8),
        "userId": EMAIL,
        "anonymousId": ANON_ID,
        "writeKey": SEGMENT_CLIENT_KEY,
        "timestamp": "2026-11-29T14:37:12.123Z",
        "properties": {"webinar_id": "w-42", "email": EMAIL, "name": NAME},
        "context": {"ip": IP, "userAgent": UA, "page": {"url": PAGE_URL, "referrer": REFERRER, "title": NAME}},
    }
    res = requests.post(
        stack.base_url + "/v1/t",
        data=json.dumps(message, ensure_ascii=False).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
        timeout=HTTP_TIMEOUT,
    )
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True}
    (entry,) = stack.since(mark)
    assert entry["error"] is None and isinstance(entry["json"], dict)
    assert header(entry, "content-type") == "text/plain;charset=UTF-8"
    body = entry["json"]
    assert TOKEN.fullmatch(body["userId"]) and body["messageId"] == message["messageId"]
    assert "writeKey" not in body and HOUR.match(body["timestamp"])
    assert body["context"]["ip"] == "203.0.113.0" and body["context"]["userAgent"] == "Chrome/120"
    page = body["context"]["page"]
    assert "title" not in page and "utm_source=newsletter" in page["url"], page
    assert EMAIL_TOKEN.match(body["properties"]["email"])
    assert_no_raw_values([entry], extra=[SEGMENT_CLIENT_KEY])


# --- Mixpanel -------------------------------------------------------------------
def test_mixpanel_track_engage_groups_import(stack):
    """mixpanel: form-encoded `data` JSON to /track, /engage and /groups (one
    request per call), a BufferedConsumer batch (`data` an array), and /import
    with the deprecated key and secret, which scrim drops; the upstream's
    `headers` inject the service-account credentials instead. Then a
    mixpanel-js style GET /track?data=<base64>."""
    mark = stack.mark()
    base = stack.base_url
    urls = dict(
        events_url=base + "/track",
        people_url=base + "/engage",
        groups_url=base + "/groups",
        import_url=base + "/import",
        request_timeout=HTTP_TIMEOUT,
        retry_limit=0,
    )
    with LogRecorder("mixpanel") as logs:
        logs.listen()
        # Every call raises MixpanelException unless the answer is {"status": 1}.
        mp = Mixpanel(MIXPANEL_TOKEN, consumer=Consumer(**urls))
        mp.track(
            EMAIL,
            "Webinar Joined",
            {
                "webinar_id": "w-42",
                "ip": IP,
                "$current_url": PAGE_URL,
                "$referrer": REFERRER,
                "email": EMAIL,
                "name": NAME,
            },
        )
        mp.track(EMAIL, "Chat Question Asked", {"webinar_id": "w-42", "message": CHAT})
        mp.people_set(EMAIL, {"$email": EMAIL, "$name": NAME, "plan": "pro"}, meta={"$ip": IP})
        mp.people_set_once(EMAIL, {"first_webinar": "w-42"})
        mp.group_set("company", "acme", {"plan": "enterprise"})
        mp.import_data(
            MIXPANEL_CLIENT_KEY,
            EMAIL,
            "Webinar Held",
            1764427032,
            {"webinar_id": "w-42"},
            api_secret=MIXPANEL_CLIENT_SECRET,
        )
        buffered = BufferedConsumer(**urls)
        batch = Mixpanel(MIXPANEL_TOKEN, consumer=buffered)
        batch.track(EMAIL, "Webinar Left", {"webinar_id": "w-42", "duration_s": 1834})
        batch.track(ANON_ID, "Replay Watched", {"webinar_id": "w-42"})
        buffered.flush()
    assert not logs.errors(), logs.errors()

    entries = stack.since(mark)
    paths = [e["path"] for e in entries]
    assert paths == ["/track", "/track", "/engage", "/engage", "/groups", "/import", "/track"], paths
    for e in entries:
        assert e["method"] == "POST" and e["error"] is None, e["error"]
        assert header(e, "content-type") == "application/x-www-form-urlencoded"
        form = dict(e["form"])
        assert set(form) == {"data", "verbose", "ip"}, form.keys()  # api_key dropped
        assert form["verbose"] == "1" and form["ip"] == "0"
        assert form["data"].startswith(("{", "[")), "JSON in, JSON out"
        if e["path"] != "/groups":  # an organisation's profile: no person in it
            assert TOKEN.search(e["body_text"]), "no k1_ pseudonym"
    track, chat, engage, engage_once, groups, imported, buffered_batch = (e["json"] for e in entries)
    props = track["properties"]
    person = props["distinct_id"]
    assert TOKEN.fullmatch(person)
    assert track["event"] == "Webinar Joined"
    assert props["token"] == MIXPANEL_TOKEN and props["mp_lib"] == "python"
    assert props["$lib_version"] == MIXPANEL_VERSION
    assert re.fullmatch(r"[0-9a-f]{32}", props["$insert_id"])
    assert isinstance(props["time"], int) and props["time"] % 3600 == 0, props["time"]
    assert props["ip"] == "203.0.113.0"
    assert EMAIL_TOKEN.match(props["email"]) and props["name"].startswith("Participant k1_")
    assert "utm_source=newsletter" in props["$current_url"]
    assert props["email"].replace("@", "%40") in props["$current_url"], "the URL's email joins"
    assert "utm_medium=email" in props["$referrer"] and "name=k1_" in props["$referrer"]
    assert chat["properties"]["distinct_id"] == person
    assert chat["properties"]["message"].startswith("Hi! Could you send the slides to k1_")
    assert engage["$token"] == MIXPANEL_TOKEN and engage["$distinct_id"] == person
    assert engage["$ip"] == "203.0.113.0" and engage["$time"] % 3600 == 0
    assert engage["$set"]["$email"] == props["email"] and engage["$set"]["plan"] == "pro"
    assert engage["$set"]["$name"].startswith("Person k1_")
    assert engage_once["$set_once"] == {"first_webinar": "w-42"}
    assert (groups["$group_key"], groups["$group_id"]) == ("company", "acme")
    assert groups["$set"] == {"plan": "enterprise"}
    assert header(entries[5], "authorization") == "Basic " + MIXPANEL_IMPORT_BASIC
    assert imported["properties"]["time"] == 1764424800
    assert imported["properties"]["distinct_id"] == person
    assert [m["properties"]["distinct_id"] == person for m in buffered_batch] == [True, False]
    assert buffered_batch[0]["properties"]["duration_s"] == 1834

    # mixpanel-js with api_method GET: base64 `data` in the query, a cache buster.
    mark = stack.mark()
    event = {"event": "Page Viewed", "properties": {"token": MIXPANEL_TOKEN, "distinct_id": EMAIL, "$current_url": PAGE_URL, "time": 1764427032123}}
    data = base64.b64encode(json.dumps(event).encode()).decode()
    res = requests.get(base + "/track", params={"data": data, "ip": "1", "_": "1764427032123"}, timeout=HTTP_TIMEOUT)
    assert res.status_code == 200 and res.json()["status"] == 1, res.text
    (get,) = stack.since(mark)
    query = dict(parse_qsl(urlsplit(get["path"]).query))
    assert set(query) == {"data", "ip"}, query
    inner = json.loads(base64.b64decode(query["data"]))
    assert inner["properties"]["distinct_id"] == person, "the query's token is the body's"
    assert inner["properties"]["time"] == 1764424800000
    entries.append(get)
    assert_no_raw_values(entries, extra=[MIXPANEL_CLIENT_KEY, MIXPANEL_CLIENT_SECRET])


# --- Amplitude ------------------------------------------------------------------
def test_amplitude_http_v2(stack):
    """amplitude-analytics: POST /2/httpapi, JSON, the project key in the body
    (Amplitude requires it there). Every event must come back with code 200."""
    mark = stack.mark()
    results = []
    with LogRecorder("amplitude") as logs:
        client = Amplitude(
            AMPLITUDE_KEY,
            configuration=AmplitudeConfig(
                server_url=stack.base_url + "/2/httpapi",
                flush_interval_millis=60000,
                flush_max_retries=1,
                callback=lambda event, code, message=None: results.append((event.event_type, code, message)),
            ),
        )
        logs.listen()
        try:
            client.track(
                BaseEvent(
                    "Webinar Joined",
                    user_id=EMAIL,
                    device_id=ANON_ID,
                    ip=IP,
                    event_properties={"webinar_id": "w-42", "email": EMAIL, "name": NAME, "page_url": PAGE_URL},
                )
            )
            client.identify(
                Identify().set("email", EMAIL).set("name", NAME).set("plan", "pro").set_once("first_webinar", "w-42"),
                EventOptions(user_id=EMAIL, ip=IP),
            )
            client.track(BaseEvent("Chat Question Asked", user_id=EMAIL, event_properties={"message": CHAT}))

            def flush():
                for future in client.flush() or []:
                    future.result(FLUSH_TIMEOUT)

            bounded(flush, FLUSH_TIMEOUT + 5, "amplitude flush")
        finally:
            bounded(client.shutdown, FLUSH_TIMEOUT, "amplitude shutdown")
    assert sorted(results) == [
        ("$identify", 200, "Event sent successfully."),
        ("Chat Question Asked", 200, "Event sent successfully."),
        ("Webinar Joined", 200, "Event sent successfully."),
    ], results
    assert not logs.errors(), logs.errors()

    entries = stack.since(mark)
    assert_valid(entries, "/2/httpapi", None)
    events = []
    for e in entries:
        body = e["json"]
        assert set(body) <= {"api_key", "events", "options"}, set(body)
        assert body["api_key"] == AMPLITUDE_KEY
        events += body["events"]
    by_type = {ev["event_type"]: ev for ev in events}
    assert sorted(by_type) == ["$identify", "Chat Question Asked", "Webinar Joined"]
    person = by_type["Webinar Joined"]["user_id"]
    assert TOKEN.fullmatch(person)
    for ev in events:
        assert ev["user_id"] == person
        assert ev["library"] == "amplitude-python/" + AMPLITUDE_VERSION
        assert ev["time"] % 3_600_000 == 0, ev["time"]
        assert re.fullmatch(r"[0-9a-f-]{36}", ev["insert_id"])
    joined = by_type["Webinar Joined"]
    assert TOKEN.fullmatch(joined["device_id"]) and joined["device_id"] != person
    assert joined["ip"] == "203.0.113.0"
    assert EMAIL_TOKEN.match(joined["event_properties"]["email"])
    assert joined["event_properties"]["name"].startswith("Participant k1_")
    assert "utm_source=newsletter" in joined["event_properties"]["page_url"]
    user = by_type["$identify"]["user_properties"]
    assert user["$set"]["email"] == joined["event_properties"]["email"]
    assert user["$set"]["name"].startswith("Person k1_") and user["$set"]["plan"] == "pro"
    assert user["$setOnce"] == {"first_webinar": "w-42"}
    chat = by_type["Chat Question Asked"]["event_properties"]["message"]
    assert chat.startswith("Hi! Could you send the slides to k1_"), chat
    assert_no_raw_values(entries)


# --- Snowplow -------------------------------------------------------------------
def run_snowplow(stack, method):
    """The Python tracker, one emitter per method; consent granted by the
    cookie the rules read. Returns what on_success reported."""
    sent, failed = [], []
    session = requests.Session()
    session.headers["Cookie"] = SNOWPLOW_CONSENT
    emitter = Emitter(
        stack.base_url,
        method=method,
        batch_size=1 if method == "get" else 10,
        on_success=lambda events: sent.extend(events),
        on_failure=lambda n, events: failed.extend(events),
        request_timeout=HTTP_TIMEOUT,
        session=session,
    )
    subject = (
        Subject()
        .set_user_id(EMAIL)
        .set_ip_address(IP)
        .set_useragent(UA)
        .set_lang("da")
        .set_domain_user_id(ANON_ID)
        .set_network_user_id("nuid-" + ANON_ID)
    )
    tracker = Tracker("sp", emitter, subject=subject, app_id="webinars")
    participant = SelfDescribingJson("iglu:com.example/participant/jsonschema/1-0-0", {"id": EMAIL, "name": NAME, "role": "attendee"})
    tracker.track(PageView(page_url=PAGE_URL, page_title="Join as " + EMAIL, referrer=REFERRER))
    tracker.track(
        SelfDescribing(
            SelfDescribingJson(
                "iglu:com.example/webinar_action/jsonschema/1-0-0",
                {"action": "raise_hand", "webinar_id": "w-42", "email": EMAIL, "name": NAME},
            ),
            context=[participant],
        )
    )
    tracker.track(StructuredEvent("webinar", "ask", label=CHAT, value=1))
    bounded(tracker.flush, FLUSH_TIMEOUT, "snowplow flush")
    assert not failed, "the collector refused events:\nscrim:\n%s" % tail(stack.log_path)
    assert len(sent) == 3, sent
    return sent


def check_snowplow_events(events):
    """The tracker parameters of the three events, as the collector got them."""
    assert [ev["e"] for ev in events] == ["pv", "ue", "se"]
    person = events[0]["uid"]
    assert TOKEN.fullmatch(person)
    for ev in events:
        assert ev["uid"] == person and TOKEN.fullmatch(ev["duid"]) and TOKEN.fullmatch(ev["tnuid"])
        assert ev["ip"] == "203.0.113.0" and ev["ua"] == "Chrome/120"
        assert ev["tv"] == "py-" + SNOWPLOW_VERSION and ev["aid"] == "webinars" and ev["p"] == "pc"
        assert int(ev["dtm"]) % 3_600_000 == 0 and int(ev["stm"]) % 3_600_000 == 0
        assert re.fullmatch(r"[0-9a-f-]{36}", ev["eid"])
    pv, ue, se = events
    assert "utm_source=newsletter" in pv["url"] and "email=k1_" in pv["url"]
    assert pv["refr"].startswith("https://mail.example.com/inbox?name=k1_") and "utm_medium=email" in pv["refr"]
    assert pv["page"].startswith("Join as k1_") and pv["page"].endswith("@pseudonym.invalid")
    pad = "=" * (-len(ue["ue_px"]) % 4)
    event = json.loads(base64.urlsafe_b64decode(ue["ue_px"] + pad))
    data = event["data"]["data"]
    assert event["data"]["schema"] == "iglu:com.example/webinar_action/jsonschema/1-0-0"
    assert data["action"] == "raise_hand" and data["webinar_id"] == "w-42"
    assert EMAIL_TOKEN.match(data["email"]) and data["name"].startswith("Participant k1_")
    assert data["email"].replace("@", "%40") in pv["url"], "the event's email joins the URL's"
    pad = "=" * (-len(ue["cx"]) % 4)
    contexts = json.loads(base64.urlsafe_b64decode(ue["cx"] + pad))["data"]
    assert contexts[0]["data"]["role"] == "attendee" and TOKEN.fullmatch(contexts[0]["data"]["id"])
    assert se["se_ca"] == "webinar" and se["se_ac"] == "ask" and se["se_va"] == "1"
    assert se["se_la"].startswith("Hi! Could you send the slides to k1_")


def test_snowplow_get_pixel(stack):
    """snowplow-tracker, GET /i: the tracker protocol in the query string,
    ue_px and cx base64url JSON inside it."""
    mark = stack.mark()
    run_snowplow(stack, "get")
    entries = stack.since(mark)
    assert len(entries) == 3
    events = []
    for e in entries:
        assert e["method"] == "GET" and e["error"] is None
        url = urlsplit(e["path"])
        assert url.path == "/i"
        events.append(dict(parse_qsl(url.query)))
    check_snowplow_events(events)
    assert_no_raw_values(entries)


def test_snowplow_post_payload_data(stack):
    """snowplow-tracker, POST /com.snowplowanalytics.snowplow/tp2: the same
    parameters as strings in a self-describing payload_data envelope."""
    mark = stack.mark()
    run_snowplow(stack, "post")
    entries = stack.since(mark)
    assert_valid(entries, "/com.snowplowanalytics.snowplow/tp2", None)
    events = []
    for e in entries:
        body = e["json"]
        assert set(body) == {"schema", "data"}
        assert body["schema"] == "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
        events += body["data"]
    check_snowplow_events(events)
    assert_no_raw_values(entries)


def test_unrouted_path_is_refused(stack):
    """A path no route names never reaches the upstream (the SDKs' success
    above is not an accident of a permissive proxy)."""
    import requests

    mark = stack.mark()
    res = requests.post(
        stack.base_url + "/e/",
        data=json.dumps({"distinct_id": EMAIL}),
        headers={"Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT,
    )
    assert res.status_code == 404
    assert EMAIL not in res.text
    assert stack.since(mark) == []


PROCESSOR_RULES = ["posthog.toml", "segment.toml", "mixpanel.toml", "amplitude.toml", "snowplow.toml"]


def test_rule_files_check():
    """The rule files the SDKs ran through pass `scrim check` (what scrim run
    loaded above)."""
    scrim_bin = os.environ.get("SCRIM_BIN", str(REPO / "target" / "debug" / "scrim"))
    res = subprocess.run(
        [scrim_bin, "check"] + [str(RULES / f) for f in PROCESSOR_RULES],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stdout + res.stderr
