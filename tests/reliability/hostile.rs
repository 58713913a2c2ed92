//! Hostile and broken input. For every case: the right status with a short
//! `{"error","reason"}` that does not echo the input, nothing raw reaching
//! the upstream (for refusals: nothing at all), and scrim serving the next,
//! valid request. One test per item of `docs/reliability.md`.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Cases;
use crate::proxy_support::*;

const CLASS: &str = "Hostile input";

// --- the fixture -------------------------------------------------------------------

/// Personal values the cases send; none may reach an upstream or an error body.
const RAW: &[&str] = &[
    "alice.example@corp.example",
    "alice example",
    "bob.raw@corp.example",
    "bob raw",
    "carol.check@corp.example",
    "mallory.smuggled@corp.example",
    "sess-raw-4711",
];

/// `email` and `name` anywhere are pseudonymised, `event` and `n` kept,
/// everything else dropped; a header, a query parameter and a cookie too.
fn rules() -> String {
    rule_file(
        "hostile",
        "analytics",
        "drop",
        r#"
[[rule]]
id = "event"
field = "event"
action = "keep"

[[rule]]
id = "n"
field = "n"
action = "keep"

[[rule]]
id = "email"
field = "**.email"
action = "pseudonymise"
kind = "email"

[[rule]]
id = "name"
field = "**.name"
action = "pseudonymise"
kind = "name"
label = "Participant"

[[rule]]
id = "email-header"
header = "x-user-email"
action = "pseudonymise"
kind = "email"

[[rule]]
id = "trace"
header = "x-trace"
action = "keep"

[[rule]]
id = "query-email"
query = "email"
action = "pseudonymise"
kind = "email"

[[rule]]
id = "session"
cookie = "session"
action = "pseudonymise"
kind = "id"
"#,
    )
}

fn route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\
         inline_rules = '''\n{}\n'''\n\n",
        rules()
    )
}

/// A config: one listener, `limits`, upstream `up` (and `more` upstreams),
/// route `/v1/` to `up`, then `routes`.
fn config(up: &str, limits: &str, more: &str, routes: &str) -> String {
    format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[limits]\n{limits}\n\n\
         [upstream.up]\nurl = \"{up}\"\nresponse_timeout_ms = 3000\n\n{more}\n\n{}{routes}",
        route("/v1/", "up", "")
    )
}

struct Bench {
    up: Upstream,
    proxy: Proxy,
    client: HttpClient,
}

impl Bench {
    async fn start(limits: &str) -> Bench {
        let up = Upstream::start(ok_responder()).await;
        let proxy = Proxy::start(tempdir(), &config(&up.url(), limits, "", "")).await;
        Bench {
            up,
            proxy,
            client: h1_client(),
        }
    }

    fn seen(&self) -> usize {
        self.up.requests().len()
    }

    /// POSTs `body` as `ctype` to `path` over HTTP/1.1.
    async fn post(&self, path: &str, ctype: &str, body: impl Into<Bytes>) -> Reply {
        let req = Request::post(self.proxy.url(path))
            .header("content-type", ctype)
            .body(full(body.into()))
            .unwrap();
        send(&self.client, req).await
    }

    async fn post_encoded(&self, ctype: &str, coding: &str, body: Vec<u8>) -> Reply {
        let req = Request::post(self.proxy.url("/v1/e"))
            .header("content-type", ctype)
            .header("content-encoding", coding)
            .body(full(body))
            .unwrap();
        send(&self.client, req).await
    }

    /// The upstream got nothing since `since`.
    fn untouched_since(&self, since: usize) {
        let reqs = self.up.requests();
        assert_eq!(
            reqs.len(),
            since,
            "the upstream received {:?}",
            &reqs[since.min(reqs.len())..]
        );
    }

    /// Everything the upstream ever received is free of raw values.
    fn upstream_clean(&self) {
        for r in self.up.requests() {
            assert_no_leak("what the upstream received", &r.everything(), RAW);
        }
    }

    /// The case's aftermath: nothing raw upstream, and a valid request right
    /// after is forwarded, pseudonymised, with a 200.
    async fn still_serves(&self) {
        self.upstream_clean();
        still_serves(&self.proxy, &self.up).await;
    }
}

/// Sends a valid request and checks it arrives pseudonymised with a 200.
async fn still_serves(proxy: &Proxy, up: &Upstream) {
    let before = up.requests().len();
    let reply = send(
        &h1_client(),
        post(
            &proxy.url("/v1/check"),
            "application/json",
            full(r#"{"event":"check","email":"carol.check@corp.example","n":1}"#),
        ),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "the valid request after: {}",
        reply.text()
    );
    let r = within("the valid request upstream", WAIT, async {
        loop {
            let reqs = up.requests();
            if let Some(r) = reqs
                .iter()
                .skip(before)
                .find(|r| r.path_and_query == "/v1/check" && r.complete)
            {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("@pseudonym.invalid") && body.contains(r#""event":"check""#),
        "the valid request was not pseudonymised: {body}"
    );
    assert_no_leak("the valid request upstream", &r.everything(), RAW);
}

/// Runs a case, turning a panic (a failed assert, a timeout) into `Err`.
async fn caught<F: Future<Output = ()>>(f: F) -> Result<(), String> {
    AssertUnwindSafe(f).catch_unwind().await.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())
    })
}

/// Asserts a refusal: `status` with the JSON error body, the upstream untouched.
#[track_caller]
fn refused(b: &Bench, reply: &Reply, status: u16, since: usize) {
    assert_error_reply(reply, status, RAW);
    b.untouched_since(since);
}

/// Asserts the request was forwarded once, with a 200, and returns what the
/// upstream got (checked for raw values).
async fn forwarded(b: &Bench, reply: &Reply, since: usize) -> Recorded {
    assert_eq!(reply.status, 200, "expected forwarding: {}", reply.text());
    let r = within("the forwarded request", WAIT, async {
        loop {
            let reqs = b.up.requests();
            if let Some(r) = reqs.get(since).filter(|r| r.complete || r.aborted) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(b.seen(), since + 1, "more than one request upstream");
    assert_no_leak("the forwarded request", &r.everything(), RAW);
    r
}

fn tokens(body: &[u8]) -> usize {
    String::from_utf8_lossy(body)
        .matches("@pseudonym.invalid")
        .count()
}

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zstd_enc(b: &[u8]) -> Vec<u8> {
    zstd::encode_all(b, 3).unwrap()
}

fn br_enc(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 2,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &b[..], &mut out, &params).unwrap();
    out
}

// --- raw HTTP/1.1 ------------------------------------------------------------------

/// What came back on a raw connection: the responses read (by
/// `Content-Length`), and whether the connection was closed.
#[derive(Debug)]
struct Wire {
    responses: Vec<RawReply>,
    closed: bool,
    rest: Vec<u8>,
}

/// Writes `bytes`, then reads responses until the connection closes or
/// `idle` passes without a byte.
async fn exchange(addr: SocketAddr, bytes: &[u8], half_close: bool, idle: Duration) -> Wire {
    let mut s = raw_connect(addr).await;
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    read_wire(&mut s, idle).await
}

async fn read_wire(s: &mut TcpStream, idle: Duration) -> Wire {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let mut closed = false;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match tokio::time::timeout(idle, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let (responses, rest) = split_responses(&buf);
    Wire {
        responses,
        closed,
        rest,
    }
}

/// Splits bytes into complete `Content-Length` responses; the rest is left.
fn split_responses(mut buf: &[u8]) -> (Vec<RawReply>, Vec<u8>) {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if head.to_ascii_lowercase().contains("transfer-encoding") {
            break;
        }
        let Some(status) = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if buf.len() < end + 4 + len {
            break;
        }
        out.push(RawReply {
            status,
            head,
            body: buf[end + 4..end + 4 + len].to_vec(),
        });
        buf = &buf[end + 4 + len..];
    }
    (out, buf.to_vec())
}

/// A refusal on the wire: exactly one response with `status` (one of
/// `statuses`), whose body is empty (hyper's own parse-error answers) or
/// scrim's JSON error, never echoing the input; then nothing else.
#[track_caller]
fn wire_refused(w: &Wire, statuses: &[u16]) {
    assert_eq!(
        w.responses.len(),
        1,
        "expected one response, got {:?} (rest {:?})",
        w.responses,
        String::from_utf8_lossy(&w.rest)
    );
    let r = &w.responses[0];
    assert!(
        statuses.contains(&r.status),
        "status {} not in {statuses:?}: {}",
        r.status,
        r.head
    );
    if !r.body.is_empty() {
        assert_error_body(r.status, r.status, &r.body, RAW);
    }
    assert_no_leak("the response head", &r.head, RAW);
}

const HEAD: &str = "Host: scrim\r\nContent-Type: application/json\r\n";

fn raw_post(path: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\n{HEAD}{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const GOOD: &str =
    r#"{"event":"joined","email":"alice.example@corp.example","name":"Alice Example"}"#;

// --- 1. truncated and malformed JSON ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_malformed_json() {
    let b = Bench::start("").await;
    let mut c = Cases::new(CLASS, "truncated and malformed JSON");
    let doc = GOOD;
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [1, 10, 20, 30, 40, 55, doc.len() - 1] {
        variants.push((format!("truncated at byte {cut}"), doc[..cut].into()));
    }
    for (name, body) in [
        ("missing value", r#"{"email":}"#),
        ("missing colon", r#"{"email" "alice.example@corp.example"}"#),
        (
            "trailing comma",
            r#"{"email":"alice.example@corp.example",}"#,
        ),
        ("single quotes", r#"{'email':'alice.example@corp.example'}"#),
        ("unquoted key", r#"{email:"alice.example@corp.example"}"#),
        (
            "unterminated string",
            r#"{"email":"alice.example@corp.example}"#,
        ),
        (
            "empty array slot",
            r#"{"n":[1,,2],"email":"alice.example@corp.example"}"#,
        ),
        (
            "extra closing brace",
            r#"{"email":"alice.example@corp.example"}}"#,
        ),
        (
            "two documents",
            r#"{"n":1} {"email":"alice.example@corp.example"}"#,
        ),
        ("NaN", r#"{"n":NaN,"email":"alice.example@corp.example"}"#),
        (
            "comment",
            r#"{"email":"alice.example@corp.example" /* x */}"#,
        ),
        ("bad escape", r#"{"email":"alice.example\q@corp.example"}"#),
        ("whitespace only", "   \r\n  "),
        ("bare word", "alice.example@corp.example"),
    ] {
        variants.push((name.to_owned(), body.into()));
    }
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(GOOD.as_bytes());
    variants.push(("byte-order mark".into(), bom));
    for (name, body) in variants {
        c.check(
            &name,
            caught(async {
                let since = b.seen();
                let reply = b.post("/v1/e", "application/json", body).await;
                refused(&b, &reply, 400, since);
                b.still_serves().await;
            })
            .await,
        );
    }
    // Compressed, and as the last NDJSON line.
    c.check(
        "truncated inside gzip",
        caught(async {
            let since = b.seen();
            let reply = b
                .post_encoded("application/json", "gzip", gzip(&GOOD.as_bytes()[..30]))
                .await;
            refused(&b, &reply, 400, since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "truncated NDJSON line",
        caught(async {
            let since = b.seen();
            let body = format!("{GOOD}\n{}", &GOOD[..40]);
            let reply = b.post("/v1/e", "application/x-ndjson", body).await;
            assert_error_reply(&reply, 400, RAW);
            // The first, complete line may have left (streamed, rewritten);
            // the upstream must not see a complete body.
            for r in &b.up.requests()[since..] {
                assert!(!r.complete, "a refused stream ended cleanly upstream");
            }
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 2. nesting 100,000 levels deep --------------------------------------------------

const DEEP: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_100000_levels_deep() {
    // A response-rules route too, for a deep response.
    let up = Upstream::start(Arc::new(|rec: Recorded| {
        Box::pin(async move {
            if rec.path_and_query.starts_with("/deep-response/") {
                let body = format!(
                    "{}{}{}",
                    "[".repeat(DEEP),
                    r#"{"email":"alice.example@corp.example"}"#,
                    "]".repeat(DEEP)
                );
                json_response(StatusCode::OK, &body)
            } else {
                json_response(StatusCode::OK, r#"{"ok":true}"#)
            }
        }) as ReplyFuture
    }))
    .await;
    let dir = tempdir();
    std::fs::write(dir.path().join("resp.toml"), rules()).unwrap();
    let cfg = config(
        &up.url(),
        "",
        "",
        &route("/deep-response/", "up", "response_rules = \"resp.toml\"\n"),
    );
    let proxy = Proxy::start(dir, &cfg).await;
    let b = Bench {
        up,
        proxy,
        client: h1_client(),
    };
    let mut c = Cases::new(CLASS, "nesting 100,000 levels deep");
    let arrays_open = "[".repeat(DEEP);
    let arrays = format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP));
    let objects = format!(
        "{}{{\"email\":\"alice.example@corp.example\"}}{}",
        r#"{"a":"#.repeat(DEEP),
        "}".repeat(DEEP)
    );
    let under_kept = format!(r#"{{"event":{arrays},"email":"alice.example@corp.example"}}"#);
    let under_email = format!(r#"{{"email":{arrays}}}"#);
    let over_limit = format!(
        "{}{{\"name\":\"Alice Example\"}}{}",
        r#"{"a":"#.repeat(128),
        "}".repeat(128)
    );
    for (name, ctype, body) in [
        (
            "100,000 unclosed arrays",
            "application/json",
            arrays_open.clone(),
        ),
        ("100,000 closed arrays", "application/json", arrays.clone()),
        (
            "100,000 nested objects",
            "application/json",
            objects.clone(),
        ),
        (
            "100,000 arrays under a kept field",
            "application/json",
            under_kept,
        ),
        (
            "129 levels, one over the limit",
            "application/json",
            over_limit,
        ),
        (
            "100,000 arrays as an NDJSON line",
            "application/x-ndjson",
            format!("{arrays}\n"),
        ),
        (
            "100,000 objects as an NDJSON line",
            "application/x-ndjson",
            format!("{objects}\n"),
        ),
    ] {
        c.check(
            name,
            caught(async {
                let since = b.seen();
                let reply = b.post("/v1/e", ctype, body).await;
                assert_error_reply(&reply, 400, RAW);
                assert!(reply.text().contains("nesting"), "{}", reply.text());
                for r in &b.up.requests()[since..] {
                    assert!(!r.complete, "a refused body ended cleanly upstream");
                }
                b.still_serves().await;
            })
            .await,
        );
    }
    c.check(
        "100,000 arrays or objects under a pseudonymised field: dropped, not walked",
        caught(async {
            let since = b.seen();
            let reply = b.post("/v1/e", "application/json", under_email).await;
            let r = forwarded(&b, &reply, since).await;
            assert_eq!(String::from_utf8_lossy(&r.body), "{}");
            let since = b.seen();
            let nested_emails = format!(
                "{}\"alice.example@corp.example\"{}",
                r#"{"email":"#.repeat(DEEP),
                "}".repeat(DEEP)
            );
            let reply = b.post("/v1/e", "application/json", nested_emails).await;
            let r = forwarded(&b, &reply, since).await;
            assert_eq!(String::from_utf8_lossy(&r.body), "{}");
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "100,000 arrays after a good NDJSON line",
        caught(async {
            let since = b.seen();
            let body = format!("{GOOD}\n{arrays}\n");
            let reply = b.post("/v1/e", "application/x-ndjson", body).await;
            assert_error_reply(&reply, 400, RAW);
            for r in &b.up.requests()[since..] {
                assert!(!r.complete, "a refused stream ended cleanly upstream");
            }
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "100,000 objects gzipped",
        caught(async {
            let since = b.seen();
            let reply = b
                .post_encoded("application/json", "gzip", gzip(objects.as_bytes()))
                .await;
            refused(&b, &reply, 400, since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "128 levels, at the limit, passes",
        caught(async {
            let since = b.seen();
            let body = format!(
                "{}{{\"name\":\"Alice Example\"}}{}",
                r#"{"a":"#.repeat(127),
                "}".repeat(127)
            );
            let reply = b.post("/v1/e", "application/json", body).await;
            let r = forwarded(&b, &reply, since).await;
            assert_eq!(tokens(&r.body), 0, "a name is not an email");
            assert!(String::from_utf8_lossy(&r.body).contains("Participant"));
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "a 100,000-level response under response rules is 502",
        caught(async {
            let reply = send(
                &b.client,
                Request::get(b.proxy.url("/deep-response/x"))
                    .body(empty())
                    .unwrap(),
            )
            .await;
            assert_error_reply(&reply, 502, RAW);
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 3. invalid UTF-8 --------------------------------------------------------------

/// The outcome a case expects: refused with a status (nothing upstream), or
/// forwarded with a 200 (nothing raw upstream).
#[derive(Clone, Copy, Debug)]
enum Expect {
    Refused(u16),
    Forwarded,
}

async fn body_case(b: &Bench, ctype: &str, body: Vec<u8>, expect: Expect) -> Option<Recorded> {
    let since = b.seen();
    let reply = b.post("/v1/e", ctype, body).await;
    let rec = match expect {
        Expect::Refused(status) => {
            refused(b, &reply, status, since);
            None
        }
        Expect::Forwarded => Some(forwarded(b, &reply, since).await),
    };
    b.still_serves().await;
    rec
}

fn bytes_with(prefix: &str, bad: &[u8], suffix: &str) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(bad);
    v.extend_from_slice(suffix.as_bytes());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8() {
    let b = Bench::start("").await;
    let mut c = Cases::new(CLASS, "invalid UTF-8");
    const J: &str = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, Expect)> = vec![
        (
            "0xFF in an email",
            J,
            bytes_with(r#"{"email":"alice.example"#, b"\xff", r#"@corp.example"}"#),
            Expect::Refused(400),
        ),
        (
            "broken two-byte sequence in a name",
            J,
            bytes_with(
                r#"{"name":"Alice Ex"#,
                b"\xc3\x28",
                r#"ample","email":"alice.example@corp.example"}"#,
            ),
            Expect::Refused(400),
        ),
        (
            "overlong encoding of '.'",
            J,
            bytes_with(
                r#"{"email":"alice"#,
                b"\xc0\xae",
                r#"example@corp.example"}"#,
            ),
            Expect::Refused(400),
        ),
        (
            "UTF-16 surrogate encoded in UTF-8",
            J,
            bytes_with(
                r#"{"email":"alice.example@corp.example","name":""#,
                b"\xed\xa0\x80",
                r#""}"#,
            ),
            Expect::Refused(400),
        ),
        (
            "truncated sequence at the end of a string",
            J,
            bytes_with(
                r#"{"email":"alice.example@corp.example","name":"Alice Example"#,
                b"\xe2\x82",
                r#""}"#,
            ),
            Expect::Refused(400),
        ),
        (
            "invalid byte in a key",
            J,
            bytes_with(r#"{"em"#, b"\xfe", r#"ail":"alice.example@corp.example"}"#),
            Expect::Refused(400),
        ),
        (
            "lone surrogate escape",
            J,
            br#"{"email":"alice.example@corp.example\ud800"}"#.to_vec(),
            Expect::Refused(400),
        ),
        (
            "invalid byte in an NDJSON line",
            "application/x-ndjson",
            bytes_with(
                r#"{"email":"alice.example@corp.example","name":""#,
                b"\xff\xfe",
                "\"}\n",
            ),
            Expect::Refused(400),
        ),
        (
            "percent-encoded invalid bytes in a form",
            "application/x-www-form-urlencoded",
            b"email=alice.example%FF%40corp.example&name=Alice+Example%C0".to_vec(),
            Expect::Refused(400),
        ),
        (
            "invalid bytes in a dropped field",
            J,
            bytes_with(
                r#"{"event":"joined","notes":""#,
                b"\xff\xff",
                r#"","email":"alice.example@corp.example"}"#,
            ),
            Expect::Refused(400),
        ),
    ];
    for (name, ctype, body, expect) in cases {
        c.check(
            name,
            caught(body_case(&b, ctype, body, expect).map(drop)).await,
        );
    }
    // Outside the body: in the query string and in a header value (obs-text).
    c.check(
        "percent-encoded invalid bytes in the query",
        caught(async {
            let since = b.seen();
            let req = Request::get(
                b.proxy
                    .url("/v1/e?email=alice.example%FF%40corp.example&x=%C3%28"),
            )
            .body(empty())
            .unwrap();
            let reply = send(&b.client, req).await;
            refused(&b, &reply, 400, since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "invalid bytes in a pseudonymised header",
        caught(async {
            let since = b.seen();
            let w = exchange(
                b.proxy.addr,
                &[
                    b"GET /v1/e HTTP/1.1\r\nHost: scrim\r\nX-User-Email: alice.example\xff@corp.example\r\nX-Trace: t\xfe1\r\nConnection: close\r\n\r\n".as_slice(),
                ]
                .concat(),
                false,
                Duration::from_secs(3),
            )
            .await;
            assert_eq!(w.responses.len(), 1, "{w:?}");
            let status = w.responses[0].status;
            assert!(status == 200 || status == 400, "status {status}");
            if status == 400 {
                b.untouched_since(since);
            } else {
                let r = b.up.requests()[since].clone();
                assert_no_leak("the upstream request", &r.everything(), RAW);
            }
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 4. NUL bytes ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes() {
    let b = Bench::start("").await;
    let mut c = Cases::new(CLASS, "NUL bytes");
    const J: &str = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, Expect)> = vec![
        (
            "raw NUL inside a string",
            J,
            bytes_with(r#"{"email":"alice.example"#, b"\0", r#"@corp.example"}"#),
            Expect::Refused(400),
        ),
        (
            "raw NUL between tokens",
            J,
            bytes_with(
                r#"{"email":"alice.example@corp.example","#,
                b"\0",
                r#""n":1}"#,
            ),
            Expect::Refused(400),
        ),
        (
            "NUL before the document",
            J,
            bytes_with("", b"\0", GOOD),
            Expect::Refused(400),
        ),
        (
            "raw NUL in an NDJSON line",
            "application/x-ndjson",
            bytes_with(r#"{"name":"Alice"#, b"\0", "Example\"}\n"),
            Expect::Refused(400),
        ),
    ];
    for (name, ctype, body, expect) in cases {
        c.check(
            name,
            caught(body_case(&b, ctype, body, expect).map(drop)).await,
        );
    }
    c.check(
        "escaped NUL inside an email and a name",
        caught(async {
            let body = br#"{"event":"joined","email":"alice.example@corp.example\u0000","name":"Alice Example\u0000"}"#;
            let r = body_case(&b, J, body.to_vec(), Expect::Forwarded).await.unwrap();
            assert!(!String::from_utf8_lossy(&r.body).contains("\\u0000"), "{}", String::from_utf8_lossy(&r.body));
        })
        .await,
    );
    c.check(
        "escaped NUL in a key",
        caught(async {
            let body = br#"{"event":"joined","email\u0000":"alice.example@corp.example"}"#;
            let r = body_case(&b, J, body.to_vec(), Expect::Forwarded)
                .await
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&r.body), r#"{"event":"joined"}"#);
        })
        .await,
    );
    c.check(
        "percent-encoded NUL in a form",
        caught(async {
            let body = b"email=alice.example%00%40corp.example&name=Alice%00Example".to_vec();
            body_case(
                &b,
                "application/x-www-form-urlencoded",
                body,
                Expect::Forwarded,
            )
            .await;
        })
        .await,
    );
    for (name, raw) in [
        (
            "NUL in a header value",
            b"GET /v1/e HTTP/1.1\r\nHost: scrim\r\nX-User-Email: alice.example\0@corp.example\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "NUL in the request target",
            b"GET /v1/e\0alice.example@corp.example HTTP/1.1\r\nHost: scrim\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "NUL in a header name",
            b"GET /v1/e HTTP/1.1\r\nHost: scrim\r\nX-User\0Email: alice.example@corp.example\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ] {
        c.check(
            name,
            caught(async {
                let since = b.seen();
                let w = exchange(b.proxy.addr, &raw, false, Duration::from_secs(3)).await;
                wire_refused(&w, &[400]);
                b.untouched_since(since);
                b.still_serves().await;
            })
            .await,
        );
    }
    c.check(
        "percent-encoded NUL in the path and query",
        caught(async {
            let since = b.seen();
            let req = Request::get(
                b.proxy
                    .url("/v1/e%00x?email=alice.example%00%40corp.example"),
            )
            .body(empty())
            .unwrap();
            let reply = send(&b.client, req).await;
            let r = forwarded(&b, &reply, since).await;
            assert!(
                r.path_and_query.starts_with("/v1/e%00x"),
                "{}",
                r.path_and_query
            );
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 5. duplicate keys ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys() {
    let b = Bench::start("").await;
    let mut c = Cases::new(
        CLASS,
        "duplicate keys (the rule applies to every occurrence)",
    );
    const J: &str = "application/json";
    let cases: Vec<(&str, &str, &str, usize)> = vec![
        (
            "email twice",
            J,
            r#"{"email":"alice.example@corp.example","email":"bob.raw@corp.example"}"#,
            2,
        ),
        (
            "email three times around a kept key",
            J,
            r#"{"email":"alice.example@corp.example","event":"x","email":"bob.raw@corp.example","email":"carol.check@corp.example"}"#,
            3,
        ),
        (
            "name twice",
            J,
            r#"{"name":"Alice Example","name":"Bob Raw","event":"x"}"#,
            0,
        ),
        (
            "nested, twice",
            J,
            r#"{"user":{"email":"alice.example@corp.example","email":"bob.raw@corp.example"}}"#,
            2,
        ),
        (
            "an escaped spelling of the same key",
            J,
            r#"{"email":"alice.example@corp.example","em\u0061il":"bob.raw@corp.example"}"#,
            2,
        ),
        (
            "an object, then a string",
            J,
            r#"{"email":{"x":"alice.example@corp.example"},"email":"bob.raw@corp.example"}"#,
            1,
        ),
        (
            "a string, then an array",
            J,
            r#"{"email":"alice.example@corp.example","email":["bob.raw@corp.example"]}"#,
            1,
        ),
        (
            "twice in an NDJSON line",
            "application/x-ndjson",
            "{\"email\":\"alice.example@corp.example\",\"email\":\"bob.raw@corp.example\"}\n",
            2,
        ),
        (
            "twice in a form",
            "application/x-www-form-urlencoded",
            "email=alice.example%40corp.example&email=bob.raw%40corp.example",
            2,
        ),
    ];
    for (name, ctype, body, want) in cases {
        c.check(
            name,
            caught(async {
                let r = body_case(&b, ctype, body.as_bytes().to_vec(), Expect::Forwarded)
                    .await
                    .unwrap();
                let got = if ctype.contains("form") {
                    String::from_utf8_lossy(&r.body)
                        .matches("%40pseudonym.invalid")
                        .count()
                        + tokens(&r.body)
                } else {
                    tokens(&r.body)
                };
                assert_eq!(got, want, "tokens in {}", String::from_utf8_lossy(&r.body));
                if name == "name twice" {
                    assert_eq!(
                        String::from_utf8_lossy(&r.body)
                            .matches("Participant")
                            .count(),
                        2,
                        "{}",
                        String::from_utf8_lossy(&r.body)
                    );
                }
            })
            .await,
        );
    }
    c.check(
        "twice in the query",
        caught(async {
            let since = b.seen();
            let req = Request::get(
                b.proxy
                    .url("/v1/e?email=alice.example%40corp.example&email=bob.raw%40corp.example"),
            )
            .body(empty())
            .unwrap();
            let reply = send(&b.client, req).await;
            let r = forwarded(&b, &reply, since).await;
            assert_eq!(
                r.path_and_query.matches("pseudonym.invalid").count(),
                2,
                "{}",
                r.path_and_query
            );
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "a header twice, a cookie twice",
        caught(async {
            let since = b.seen();
            let req = Request::get(b.proxy.url("/v1/e"))
                .header("x-user-email", "alice.example@corp.example")
                .header("x-user-email", "bob.raw@corp.example")
                .header("cookie", "session=sess-raw-4711; session=sess-raw-4711-b")
                .header("cookie", "session=sess-raw-4711-c")
                .body(empty())
                .unwrap();
            let reply = send(&b.client, req).await;
            let r = forwarded(&b, &reply, since).await;
            assert_no_leak("the upstream request", &r.everything(), &["sess-raw"]);
            let emails: Vec<_> = r.headers.get_all("x-user-email").iter().collect();
            assert!(!emails.is_empty(), "the pseudonymised header is missing");
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 6. huge numbers and strings ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_numbers_and_strings() {
    let b = Bench::start("max_body_bytes = 4194304").await;
    let mut c = Cases::new(CLASS, "huge numbers and strings");
    const J: &str = "application/json";
    let digits = "9".repeat(5000);
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "1e400 (beyond f64)",
            r#"{"n":1e400,"email":"alice.example@corp.example"}"#.into(),
            Expect::Refused(400),
        ),
        (
            "-1e400",
            r#"{"n":-1e400,"email":"alice.example@corp.example"}"#.into(),
            Expect::Refused(400),
        ),
        (
            "a 5,000-digit integer",
            format!(r#"{{"n":{digits},"email":"alice.example@corp.example"}}"#),
            Expect::Refused(400),
        ),
        (
            "a 5,000-digit fraction",
            format!(r#"{{"n":0.{digits},"email":"alice.example@corp.example"}}"#),
            Expect::Forwarded,
        ),
        (
            "2^64 and -2^63-1",
            r#"{"n":[18446744073709551616,-9223372036854775809,1e-400,-0],"email":"alice.example@corp.example"}"#.into(),
            Expect::Forwarded,
        ),
        (
            "a 2 MiB email (over the string limit)",
            format!(r#"{{"email":"{}alice.example@corp.example"}}"#, "a".repeat(2 << 20)),
            Expect::Refused(400),
        ),
        (
            "a 2 MiB key (unnamed: dropped)",
            format!(r#"{{"{}":"alice.example@corp.example"}}"#, "k".repeat(2 << 20)),
            Expect::Forwarded,
        ),
        (
            "a 900 KiB name (under the limit)",
            format!(r#"{{"name":"Alice Example {}"}}"#, "x".repeat(900 << 10)),
            Expect::Forwarded,
        ),
        (
            "200,000 array elements",
            format!(r#"{{"email":"alice.example@corp.example","n":[{}0]}}"#, "1,".repeat(200_000)),
            Expect::Forwarded,
        ),
    ];
    for (name, body, expect) in cases {
        c.check(
            name,
            caught(async {
                let r = body_case(&b, J, body.into_bytes(), expect).await;
                if let Some(r) = r {
                    let text = String::from_utf8_lossy(&r.body);
                    assert!(
                        serde_json::from_slice::<serde_json::Value>(&r.body).is_ok(),
                        "not JSON upstream"
                    );
                    assert!(text.len() < 8 << 20, "output blew up: {} bytes", text.len());
                }
            })
            .await,
        );
    }
    c.check(
        // Announced with `Expect: 100-continue`, so that the 413 comes before
        // the client writes 6 MiB into a socket scrim is closing.
        "a 6 MiB body (over max_body_bytes)",
        caught(async {
            let since = b.seen();
            let raw = format!(
                "POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                6 << 20
            );
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, Duration::from_secs(3)).await;
            wire_refused(&w, &[413]);
            assert!(
                !w.responses[0].body.is_empty(),
                "scrim's 413 carries a reason"
            );
            b.untouched_since(since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "a 5 MiB NDJSON line (over the line limit)",
        caught(async {
            let since = b.seen();
            let body = format!("{GOOD}\n{{\"name\":\"{}\"}}\n", "x".repeat(5 << 20));
            let (tx, body_stream) = channel_body();
            let client = b.client.clone();
            let req = post(&b.proxy.url("/v1/e"), "application/x-ndjson", body_stream);
            let pending = tokio::spawn(async move { send(&client, req).await });
            for part in body.as_bytes().chunks(256 << 10) {
                if tx.send(Ok(Bytes::copy_from_slice(part))).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let reply = within("the long line's answer", WAIT, pending)
                .await
                .unwrap();
            assert!(
                reply.status == 400 || reply.status == 413,
                "status {}: {}",
                reply.status,
                reply.text()
            );
            assert_error_reply(&reply, reply.status.as_u16(), RAW);
            for r in &b.up.requests()[since..] {
                assert!(!r.complete, "a refused stream ended cleanly upstream");
            }
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 7. a gzip bomb and a zstd bomb --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_bombs() {
    let b = Bench::start("max_decoded_bytes = 1048576").await;
    let mut c = Cases::new(CLASS, "gzip, zstd, deflate and brotli bombs");
    // 16 MiB of valid JSON that compresses to almost nothing.
    let mut doc = Vec::with_capacity(16 << 20);
    doc.extend_from_slice(br#"{"email":"alice.example@corp.example","n":["#);
    while doc.len() < 16 << 20 {
        doc.extend_from_slice(b"0,");
    }
    doc.extend_from_slice(b"0]}");
    let mut line = Vec::with_capacity(16 << 20);
    line.extend_from_slice(br#"{"name":"Alice Example","n":""#);
    line.resize(16 << 20, b'a');
    line.extend_from_slice(b"\"}\n");
    type Enc = fn(&[u8]) -> Vec<u8>;
    for (coding, enc) in [
        ("gzip", gzip as Enc),
        ("zstd", zstd_enc as Enc),
        ("deflate", deflate as Enc),
        ("br", br_enc as Enc),
    ] {
        let bomb = enc(&doc);
        c.check(
            &format!("{coding} bomb, JSON ({} KiB to 16 MiB)", bomb.len() >> 10),
            caught(async {
                assert!(bomb.len() < 256 << 10, "the bomb is {} bytes", bomb.len());
                let since = b.seen();
                let reply = b
                    .post_encoded("application/json", coding, bomb.clone())
                    .await;
                refused(&b, &reply, 413, since);
                b.still_serves().await;
            })
            .await,
        );
    }
    for (coding, enc) in [("gzip", gzip as Enc), ("zstd", zstd_enc as Enc)] {
        let bomb = enc(&line);
        c.check(
            &format!("{coding} bomb, one 16 MiB NDJSON line"),
            caught(async {
                let since = b.seen();
                let reply = b
                    .post_encoded("application/x-ndjson", coding, bomb.clone())
                    .await;
                assert!(
                    reply.status == 400 || reply.status == 413,
                    "status {}: {}",
                    reply.status,
                    reply.text()
                );
                assert_error_reply(&reply, reply.status.as_u16(), RAW);
                for r in &b.up.requests()[since..] {
                    assert!(!r.complete, "a refused stream ended cleanly upstream");
                }
                b.still_serves().await;
            })
            .await,
        );
    }
    c.check(
        "gzip inside gzip (one layer declared)",
        caught(async {
            let since = b.seen();
            let reply = b
                .post_encoded("application/json", "gzip", gzip(&gzip(&doc)))
                .await;
            refused(&b, &reply, 400, since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "two codings declared (gzip, gzip)",
        caught(async {
            let since = b.seen();
            let reply = b
                .post_encoded(
                    "application/json",
                    "gzip, gzip",
                    gzip(&gzip(GOOD.as_bytes())),
                )
                .await;
            refused(&b, &reply, 415, since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "corrupt gzip",
        caught(async {
            let mut z = gzip(GOOD.as_bytes());
            let mid = z.len() / 2;
            z[mid] ^= 0xff;
            z[mid + 1] ^= 0xff;
            let since = b.seen();
            let reply = b.post_encoded("application/json", "gzip", z).await;
            refused(&b, &reply, 400, since);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "a bomb over h2c",
        caught(async {
            let since = b.seen();
            let req = Request::post(b.proxy.url("/v1/e"))
                .header("content-type", "application/json")
                .header("content-encoding", "zstd")
                .body(full(zstd_enc(&doc)))
                .unwrap();
            let reply = send(&h2c_client(), req).await;
            refused(&b, &reply, 413, since);
            b.still_serves().await;
        })
        .await,
    );
    c.finish();
}

// --- 8. Content-Length that disagrees with the body ------------------------------------

const SMUGGLED: &str =
    "POST /v1/smuggled HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\n\
                        Content-Length: 41\r\n\r\n{\"email\":\"mallory.smuggled@corp.example\"}";

/// After a raw case: the upstream got at most `max` requests since `since`,
/// none of them smuggled, none raw; then scrim still serves.
async fn wire_aftermath(b: &Bench, since: usize, max: usize) {
    let reqs = b.up.requests();
    assert!(
        reqs.len() - since <= max,
        "the upstream got {} requests: {:?}",
        reqs.len() - since,
        &reqs[since..]
    );
    for r in &reqs[since..] {
        assert!(
            !r.path_and_query.contains("smuggled"),
            "a smuggled request reached the upstream: {r:?}"
        );
    }
    b.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_disagrees_with_the_body() {
    let b = Bench::start("body_timeout_ms = 300\nmax_body_bytes = 65536").await;
    let mut c = Cases::new(CLASS, "Content-Length that disagrees with the body");
    let idle = Duration::from_secs(3);
    c.check(
        "longer than the body, client waits: 408",
        caught(async {
            let since = b.seen();
            let raw = format!("POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: 500\r\n\r\n{GOOD}");
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
            wire_refused(&w, &[408]);
            assert!(
                !w.responses[0].body.is_empty(),
                "scrim's 408 carries a reason"
            );
            b.untouched_since(since);
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.check(
        "longer than the body, client closes: nothing forwarded",
        caught(async {
            let since = b.seen();
            let raw = format!("POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: 500\r\n\r\n{GOOD}");
            let w = exchange(b.proxy.addr, raw.as_bytes(), true, idle).await;
            assert!(w.closed, "the connection stays open");
            assert!(w.responses.iter().all(|r| r.status == 400), "{w:?}");
            b.untouched_since(since);
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.check(
        "shorter than the body, keep-alive: the rest is a bad request",
        caught(async {
            let since = b.seen();
            let raw = format!(
                "POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: {}\r\n\r\n{GOOD}{{\"email\":\"bob.raw@corp.example\"}}",
                GOOD.len()
            );
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
            let statuses: Vec<u16> = w.responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 400], "{w:?}");
            assert!(w.closed, "the connection stays open after a parse error");
            let r = b.up.requests()[since].clone();
            assert_eq!(tokens(&r.body), 1, "{}", String::from_utf8_lossy(&r.body));
            wire_aftermath(&b, since, 1).await;
        })
        .await,
    );
    c.check(
        "shorter than the body, a smuggled request after it",
        caught(async {
            let since = b.seen();
            let raw = format!(
                "POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: {}\r\n\r\n{GOOD}{SMUGGLED}",
                GOOD.len()
            );
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
            // Pipelining is legal: the second request is a request of its
            // own, and it goes through the rules like any other.
            assert!(w.responses.iter().all(|r| r.status == 200), "{w:?}");
            let reqs = b.up.requests();
            for r in &reqs[since..] {
                assert_no_leak("a pipelined request", &r.everything(), RAW);
            }
            assert!(reqs.len() - since <= 2);
            b.still_serves().await;
        })
        .await,
    );
    c.check(
        "shorter than the body, the prefix is malformed",
        caught(async {
            let since = b.seen();
            let raw = format!(
                "POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: 20\r\nConnection: close\r\n\r\n{GOOD}"
            );
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
            wire_refused(&w, &[400]);
            assert!(
                !w.responses[0].body.is_empty(),
                "scrim's 400 carries a reason"
            );
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.check(
        "zero with a body",
        caught(async {
            let since = b.seen();
            let raw = format!("POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: 0\r\n\r\n{GOOD}");
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
            let statuses: Vec<u16> = w.responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 400], "{w:?}");
            let r = b.up.requests()[since].clone();
            assert!(r.body.is_empty(), "the body of a zero-length request left");
            wire_aftermath(&b, since, 1).await;
        })
        .await,
    );
    for (name, cl) in [
        (
            "two different lengths",
            "Content-Length: 10\r\nContent-Length: 80",
        ),
        ("a plus sign", "Content-Length: +80"),
        ("negative", "Content-Length: -1"),
        ("a letter", "Content-Length: 8O"),
        ("beyond 64 bits", "Content-Length: 184467440737095516160"),
        ("a list of two values", "Content-Length: 80, 81"),
    ] {
        c.check(
            name,
            caught(async {
                let since = b.seen();
                let raw =
                    format!("POST /v1/e HTTP/1.1\r\n{HEAD}{cl}\r\nConnection: close\r\n\r\n{GOOD}");
                let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
                wire_refused(&w, &[400]);
                wire_aftermath(&b, since, 0).await;
            })
            .await,
        );
    }
    c.check(
        "over max_body_bytes, body never sent: 413 at once",
        caught(async {
            let since = b.seen();
            let raw = format!("POST /v1/e HTTP/1.1\r\n{HEAD}Content-Length: 1000000\r\n\r\n{GOOD}");
            let start = Instant::now();
            let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
            wire_refused(&w, &[413]);
            assert!(!w.responses[0].body.is_empty());
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{:?}",
                start.elapsed()
            );
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.check(
        "h2: content-length longer than the DATA",
        caught(async {
            let since = b.seen();
            let got =
                h2_one_request(b.proxy.addr, &[("content-length", "500")], GOOD.as_bytes()).await;
            assert!(got.no_success(1), "{got:?}");
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.check(
        "h2: content-length shorter than the DATA",
        caught(async {
            let since = b.seen();
            let got =
                h2_one_request(b.proxy.addr, &[("content-length", "20")], GOOD.as_bytes()).await;
            assert!(got.no_success(1), "{got:?}");
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.finish();
}

// --- 9. Content-Length with Transfer-Encoding (request smuggling) -------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling() {
    let b = Bench::start("body_timeout_ms = 500").await;
    let mut c = Cases::new(
        CLASS,
        "Content-Length with Transfer-Encoding (request smuggling)",
    );
    let idle = Duration::from_secs(3);
    let p = "POST /v1/e HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\n";
    // (name, bytes, expected status of the one response: None = 400 or a close)
    let cases: Vec<(&str, String, Option<u16>)> = vec![
        (
            "CL.TE: an empty chunked body, then a request",
            format!("{p}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}", 5 + SMUGGLED.len()),
            Some(400),
        ),
        (
            "TE.CL: a request inside the chunk, a short Content-Length",
            format!("{p}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{}0\r\n\r\n", chunk(SMUGGLED)),
            Some(400),
        ),
        (
            "TE and CL, a valid chunked body, a request after it",
            format!("{p}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n{SMUGGLED}", chunk(GOOD)),
            Some(200),
        ),
        (
            "chunked, then identity",
            format!("{p}Transfer-Encoding: chunked, identity\r\nContent-Length: {}\r\n\r\n{GOOD}", GOOD.len()),
            Some(400),
        ),
        (
            "xchunked",
            format!("{p}Transfer-Encoding: xchunked\r\nContent-Length: {}\r\n\r\n{GOOD}", GOOD.len()),
            Some(400),
        ),
        (
            "two Transfer-Encoding headers, identity last",
            format!("{p}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{}0\r\n\r\n{SMUGGLED}", chunk(GOOD)),
            Some(400),
        ),
        (
            "a space before the colon",
            format!("{p}Transfer-Encoding : chunked\r\nContent-Length: {}\r\n\r\n{GOOD}", GOOD.len()),
            Some(400),
        ),
        (
            "a vertical tab before chunked",
            format!("{p}Transfer-Encoding: \x0bchunked\r\nContent-Length: {}\r\n\r\n{GOOD}", GOOD.len()),
            Some(400),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!("POST /v1/e HTTP/1.0\r\nHost: scrim\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n", chunk(GOOD)),
            Some(400),
        ),
        (
            "an invalid chunk size",
            format!("{p}Transfer-Encoding: chunked\r\n\r\nzz\r\n{GOOD}\r\n0\r\n\r\n{SMUGGLED}"),
            None,
        ),
        (
            "a chunk size beyond 64 bits",
            format!("{p}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n{GOOD}\r\n0\r\n\r\n"),
            None,
        ),
        (
            "a chunk shorter than its size",
            format!("{p}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{GOOD}\r\n0\r\n\r\n{SMUGGLED}", GOOD.len() + 40),
            None,
        ),
    ];
    for (name, raw, expect) in cases {
        c.check(
            name,
            caught(async {
                let since = b.seen();
                let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
                assert!(w.closed, "the connection stays open: {w:?}");
                assert!(w.responses.len() <= 1, "more than one response: {w:?}");
                match expect {
                    Some(200) => {
                        assert_eq!(w.responses.len(), 1, "{w:?}");
                        assert_eq!(w.responses[0].status, 200, "{w:?}");
                        assert_eq!(b.seen(), since + 1, "one request upstream");
                    }
                    Some(s) => {
                        wire_refused(&w, &[s]);
                        b.untouched_since(since);
                    }
                    None => {
                        if !w.responses.is_empty() {
                            wire_refused(&w, &[400]);
                        }
                        b.untouched_since(since);
                    }
                }
                wire_aftermath(&b, since, 1).await;
            })
            .await,
        );
    }
    c.check(
        "two pipelined requests are both served (the harness sees a second request)",
        caught(async {
            let since = b.seen();
            let one = format!("{p}Content-Length: {}\r\n\r\n{GOOD}", GOOD.len());
            let two = format!(
                "{p}Content-Length: {}\r\nConnection: close\r\n\r\n{GOOD}",
                GOOD.len()
            );
            let w = exchange(b.proxy.addr, format!("{one}{two}").as_bytes(), false, idle).await;
            let statuses: Vec<u16> = w.responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 200], "{w:?}");
            assert_eq!(b.seen(), since + 2);
            wire_aftermath(&b, since, 2).await;
        })
        .await,
    );
    c.check(
        "h2: a Transfer-Encoding header",
        caught(async {
            let since = b.seen();
            let got = h2_one_request(
                b.proxy.addr,
                &[("transfer-encoding", "chunked")],
                GOOD.as_bytes(),
            )
            .await;
            assert!(got.no_success(1), "{got:?}");
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.finish();
}

// --- 10. header injection and over-long headers ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_and_over_long_headers() {
    let b = Bench::start("max_header_bytes = 65536").await;
    let mut c = Cases::new(CLASS, "header injection and over-long headers");
    let idle = Duration::from_secs(3);
    let g = "GET /v1/e HTTP/1.1\r\nHost: scrim\r\n";
    let refusals: Vec<(&str, String, &[u16])> = vec![
        ("a bare CR in a value", format!("{g}X-Trace: a\rX-Injected: yes\r\nConnection: close\r\n\r\n"), &[400]),
        ("an obs-fold continuation", format!("{g}X-Trace: a\r\n X-Injected: yes\r\nConnection: close\r\n\r\n"), &[400]),
        ("a space before the colon", format!("{g}X-User-Email : alice.example@corp.example\r\nConnection: close\r\n\r\n"), &[400]),
        ("a bracket in a header name", format!("{g}X(User): alice.example@corp.example\r\nConnection: close\r\n\r\n"), &[400]),
        ("a request line with a fourth part", "GET /v1/e HTTP/1.1 alice.example@corp.example\r\nHost: scrim\r\nConnection: close\r\n\r\n".into(), &[400]),
        ("a space in the target", "GET /v1/e alice.example@corp.example HTTP/1.1\r\nHost: scrim\r\nConnection: close\r\n\r\n".into(), &[400]),
        ("a 100 KiB header value", format!("{g}X-User-Email: {}alice.example@corp.example\r\nConnection: close\r\n\r\n", "a".repeat(100 << 10)), &[431]),
        ("a 100 KiB request target", format!("GET /v1/{}?email=alice.example%40corp.example HTTP/1.1\r\nHost: scrim\r\nConnection: close\r\n\r\n", "a".repeat(100 << 10)), &[414, 431]),
        ("150 headers", format!("{g}{}Connection: close\r\n\r\n", (0..150).map(|i| format!("X-H{i}: alice.example@corp.example\r\n")).collect::<String>()), &[431]),
    ];
    for (name, raw, statuses) in refusals {
        c.check(
            name,
            caught(async {
                let since = b.seen();
                let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
                wire_refused(&w, statuses);
                wire_aftermath(&b, since, 0).await;
            })
            .await,
        );
    }
    // Accepted, but nothing injected reaches the upstream.
    let accepted: Vec<(&str, String)> = vec![
        ("bare LF line ends: a second header", "GET /v1/e HTTP/1.1\nHost: scrim\nX-Trace: a\nX-Injected: yes\nConnection: close\n\n".to_string()),
        ("an encoded CRLF in a kept value", format!("{g}X-Trace: a%0d%0aX-Injected: yes\r\nConnection: close\r\n\r\n")),
        ("an encoded CRLF in the query", "GET /v1/e?email=alice.example%40corp.example%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: scrim\r\nConnection: close\r\n\r\n".to_string()),
        ("two Host headers", format!("{g}Host: evil.example\r\nX-Trace: a\r\nConnection: close\r\n\r\n")),
        ("500 cookies in 12 KiB", format!("{g}Cookie: {}session=sess-raw-4711\r\nConnection: close\r\n\r\n", (0..500).map(|i| format!("c{i}=alice{i}; ")).collect::<String>())),
    ];
    for (name, raw) in accepted {
        c.check(
            name,
            caught(async {
                let since = b.seen();
                let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
                assert_eq!(w.responses.len(), 1, "{w:?}");
                assert_eq!(w.responses[0].status, 200, "{w:?}");
                let r = b.up.requests()[since].clone();
                assert!(
                    r.header("x-injected").is_none(),
                    "an injected header left: {r:?}"
                );
                let host = r.header("host").unwrap_or_default();
                assert_eq!(host, b.up.addr.to_string(), "the upstream's own Host");
                for (k, v) in &r.headers {
                    let v = v.as_bytes();
                    assert!(!v.contains(&b'\r') && !v.contains(&b'\n'), "{k}: {v:?}");
                    assert!(
                        !k.as_str().starts_with('c')
                            || k == "content-length"
                            || k == "cookie"
                            || k == "content-type",
                        "{k}"
                    );
                }
                if let Some(cookie) = r.header("cookie") {
                    assert!(
                        !cookie.contains("alice"),
                        "an unnamed cookie left: {cookie}"
                    );
                }
                assert!(
                    !r.path_and_query.to_ascii_lowercase().contains("%0d"),
                    "{}",
                    r.path_and_query
                );
                wire_aftermath(&b, since, 1).await;
            })
            .await,
        );
    }
    c.check(
        "h2: a 100 KiB header list",
        caught(async {
            let since = b.seen();
            let long = "a".repeat(100 << 10);
            let got = h2_one_request(
                b.proxy.addr,
                &[("x-user-email", long.as_str())],
                GOOD.as_bytes(),
            )
            .await;
            assert!(got.no_success(1), "{got:?}");
            wire_aftermath(&b, since, 0).await;
        })
        .await,
    );
    c.finish();
}

// --- 11. path tricks against route matching ---------------------------------------------------

/// Whether `path`, percent-decoded once and with `\` read as `/` and
/// `;params` cut from each segment, still lies under `prefix` once its dot
/// segments are resolved: what a lenient upstream would see.
fn stays_under(path: &str, prefix: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            s => parts.push(s),
        }
    }
    let resolved = format!("/{}/", parts.join("/"));
    resolved.starts_with(prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_against_route_matching() {
    let other = Upstream::start(ok_responder()).await;
    let up = Upstream::start(ok_responder()).await;
    let more = format!("[upstream.other]\nurl = \"{}\"\n", other.url());
    let proxy = Proxy::start(
        tempdir(),
        &config(&up.url(), "", &more, &route("/internal/", "other", "")),
    )
    .await;
    let b = Bench {
        up,
        proxy,
        client: h1_client(),
    };
    let mut c = Cases::new(CLASS, "path tricks against route matching");
    let idle = Duration::from_secs(3);
    enum To {
        NoRoute,
        BadRequest,
        Up(&'static str),
        Other(&'static str),
    }
    let cases: Vec<(&str, To)> = vec![
        ("/v1/../admin", To::NoRoute),
        ("/v1/../../etc/passwd", To::NoRoute),
        ("/v1/%2e%2e/admin", To::NoRoute),
        ("/v1/%2E%2E/admin", To::NoRoute),
        ("/v1/.%2e/admin", To::NoRoute),
        ("/v1/%2e/x", To::NoRoute),
        ("/v1%2f..%2fadmin", To::NoRoute),
        ("/v1%2Fx", To::NoRoute),
        ("/v1/x%2f..%2f..%2fadmin", To::NoRoute),
        ("/v1/x%2F..%2F..%2Finternal%2Fy", To::NoRoute),
        ("/v1/x%5c..%5c..%5cadmin", To::NoRoute),
        ("/v1/..;/admin", To::NoRoute),
        ("/v1/x/..;/..;/internal/y", To::NoRoute),
        ("/v1/%2e%2e;x=1/admin", To::NoRoute),
        ("/V1/x", To::NoRoute),
        ("/v1", To::NoRoute),
        ("*", To::NoRoute),
        ("/v1/x\\..\\..\\admin", To::NoRoute),
        ("//v1/x", To::Up("/v1/x")),
        ("/v1//x", To::Up("/v1/x")),
        ("/v1/./x", To::Up("/v1/x")),
        ("/v1/x/../y", To::Up("/v1/y")),
        ("/v1/%252e%252e/admin", To::Up("/v1/%252e%252e/admin")),
        ("/v1/%c0%ae%c0%ae/admin", To::Up("/v1/%c0%ae%c0%ae/admin")),
        ("http://scrim/v1/x", To::Up("/v1/x")),
        (
            "http://evil.example/v1/../internal/y",
            To::Other("/internal/y"),
        ),
        ("/v1/../internal/y", To::Other("/internal/y")),
        ("/internal/../v1/x", To::Up("/v1/x")),
    ];
    for (target, to) in cases {
        c.check(
            target,
            caught(async {
                let since = b.seen();
                let other_since = other.requests().len();
                let method = if target == "*" { "OPTIONS" } else { "POST" };
                let raw = format!(
                    "{method} {target} HTTP/1.1\r\n{HEAD}Content-Length: {}\r\nConnection: close\r\n\r\n{GOOD}",
                    GOOD.len()
                );
                let w = exchange(b.proxy.addr, raw.as_bytes(), false, idle).await;
                match to {
                    To::NoRoute => {
                        wire_refused(&w, &[404]);
                        assert!(!w.responses[0].body.is_empty());
                    }
                    To::BadRequest => wire_refused(&w, &[400]),
                    To::Up(path) | To::Other(path) => {
                        assert_eq!(w.responses.len(), 1, "{w:?}");
                        assert_eq!(w.responses[0].status, 200, "{w:?}");
                        let (got, prefix) = if matches!(to, To::Up(_)) {
                            (b.up.requests()[since].clone(), "/v1/")
                        } else {
                            (other.requests()[other_since].clone(), "/internal/")
                        };
                        assert_eq!(got.path_and_query, path);
                        assert!(stays_under(&got.path_and_query, prefix), "{} escapes {prefix}", got.path_and_query);
                        assert_no_leak("the routed request", &got.everything(), RAW);
                    }
                }
                let expect_up = usize::from(matches!(to, To::Up(_)));
                let expect_other = usize::from(matches!(to, To::Other(_)));
                assert_eq!(b.seen() - since, expect_up, "requests to the /v1/ upstream");
                assert_eq!(other.requests().len() - other_since, expect_other, "requests to the /internal/ upstream");
                b.still_serves().await;
            })
            .await,
        );
    }
    c.finish();
}

// --- raw HTTP/2 frames -----------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A header block: POST `path` over http, then `headers` as literals.
fn header_block(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    hpack_int(&mut b, 0, 4, 4); // :path, literal value
    hpack_str(&mut b, path);
    hpack_int(&mut b, 0, 4, 1); // :authority
    hpack_str(&mut b, "scrim");
    for (k, v) in [("content-type", "application/json")].iter().chain(headers) {
        b.push(0);
        hpack_str(&mut b, k);
        hpack_str(&mut b, v);
    }
    b
}

/// HEADERS (and CONTINUATION frames past 16 KiB) for one stream.
fn header_frames(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let parts: Vec<&[u8]> = block.chunks(16384).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let flags =
            if last { END_HEADERS } else { 0 } | if i == 0 && end_stream { END_STREAM } else { 0 };
        out.extend(frame(
            if i == 0 { HEADERS } else { CONTINUATION },
            flags,
            stream,
            part,
        ));
    }
    out
}

#[derive(Debug, Clone)]
struct H2Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Frames read from scrim on a raw h2 connection, in the background.
#[derive(Debug, Default)]
struct H2Got {
    frames: Vec<H2Frame>,
    closed: bool,
}

impl H2Got {
    /// No `:status 200` on `stream` (HPACK static index 8).
    fn no_success(&self, stream: u32) -> bool {
        !self
            .frames
            .iter()
            .any(|f| f.ty == HEADERS && f.stream == stream && f.payload.first() == Some(&0x88))
    }
    fn finished(&self, stream: u32) -> bool {
        self.frames.iter().any(|f| {
            f.stream == stream
                && (f.ty == RST_STREAM
                    || (f.flags & END_STREAM != 0 && (f.ty == DATA || f.ty == HEADERS)))
        }) || self.frames.iter().any(|f| f.ty == GOAWAY)
            || self.closed
    }
    fn resets(&self, code: u32) -> usize {
        self.frames
            .iter()
            .filter(|f| f.ty == RST_STREAM && f.payload.get(..4) == Some(&code.to_be_bytes()[..]))
            .count()
    }
    fn goaway(&self) -> bool {
        self.frames.iter().any(|f| f.ty == GOAWAY)
    }
    /// Streams answered (response HEADERS) or reset.
    fn settled(&self) -> std::collections::BTreeSet<u32> {
        self.frames
            .iter()
            .filter(|f| f.stream != 0 && (f.ty == HEADERS || f.ty == RST_STREAM))
            .map(|f| f.stream)
            .collect()
    }
}

struct H2Conn {
    write: tokio::net::tcp::OwnedWriteHalf,
    got: Arc<std::sync::Mutex<H2Got>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl H2Conn {
    async fn open(addr: SocketAddr, settings: &[u8]) -> H2Conn {
        let s = raw_connect(addr).await;
        let (mut read, mut write) = s.into_split();
        write.write_all(PREFACE).await.unwrap();
        write
            .write_all(&frame(SETTINGS, 0, 0, settings))
            .await
            .unwrap();
        let got = Arc::new(std::sync::Mutex::new(H2Got::default()));
        let g = got.clone();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while buf.len() >= 9 {
                    let len = (usize::from(buf[0]) << 16)
                        | (usize::from(buf[1]) << 8)
                        | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    let f = H2Frame {
                        ty: buf[3],
                        flags: buf[4],
                        stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
                        payload: buf[9..9 + len].to_vec(),
                    };
                    buf.drain(..9 + len);
                    g.lock().unwrap().frames.push(f);
                }
            }
            g.lock().unwrap().closed = true;
        });
        H2Conn { write, got, reader }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write.write_all(bytes).await;
    }

    /// Waits until `done` holds or `d` passes; returns a copy of what came.
    async fn wait(&self, d: Duration, done: impl Fn(&H2Got) -> bool) -> H2Got {
        let end = Instant::now() + d;
        loop {
            {
                let g = self.got.lock().unwrap();
                if done(&g) || Instant::now() >= end {
                    return H2Got {
                        frames: g.frames.clone(),
                        closed: g.closed,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One POST to `/v1/e` on stream 1 with `headers` and a DATA frame that
/// ends the stream; returns what scrim sent back.
async fn h2_one_request(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> H2Got {
    let mut conn = H2Conn::open(addr, &[]).await;
    conn.send(&header_frames(1, &header_block("/v1/e", headers), false))
        .await;
    conn.send(&frame(DATA, END_STREAM, 1, body)).await;
    conn.wait(Duration::from_secs(5), |g| g.finished(1)).await
}

// --- 12. an upstream response that is malformed or lies about its length ----------------------

/// A raw upstream: reads a request head (and its `Content-Length` body),
/// then writes what `answer` gives for the path and closes.
async fn liar(answer: fn(&str) -> Vec<Vec<u8>>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break e;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let case = path.rsplit('/').next().unwrap_or("").to_owned();
                for part in answer(&case) {
                    if part.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    if s.write_all(&part).await.is_err() {
                        return;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

fn lie(case: &str) -> Vec<Vec<u8>> {
    let personal = r#"{"email":"alice.example@corp.example","name":"Alice Example","n":1}"#;
    let one = |s: String| vec![s.into_bytes()];
    match case {
        "garbage" => one("hello there\r\n\r\n".into()),
        "bad-status" => one("HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok".into()),
        "http09" => one(r#"{"ok":true}"#.into()),
        "nothing" => vec![],
        "nul-header" => one("HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok".into()),
        "negative-length" => one("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nok".into()),
        "two-lengths" => one("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nok".into()),
        "huge-header" => one(format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok", "a".repeat(1 << 20))),
        "short-body" => one(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{}",
            &personal[..40]
        )),
        "bad-chunk" => one(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}\r\nzz\r\n",
            &personal[..16]
        )),
        "unfinished-chunks" => one(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{personal}\r\n",
            personal.len()
        )),
        "endless-1xx" => (0..400)
            .flat_map(|_| [b"HTTP/1.1 102 Processing\r\n\r\n".to_vec(), Vec::new()])
            .collect(),
        "two-responses" => one(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{personal}\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            personal.len()
        )),
        _ => one(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{personal}",
            personal.len()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_malformed_or_lying() {
    let (liar_addr, _liar) = liar(lie).await;
    let up = Upstream::start(ok_responder()).await;
    let dir = tempdir();
    std::fs::write(dir.path().join("resp.toml"), rules()).unwrap();
    let more =
        format!("[upstream.liar]\nurl = \"http://{liar_addr}\"\nresponse_timeout_ms = 1000\n");
    let routes = format!(
        "{}{}",
        route("/lie/", "liar", ""),
        route("/rewritten/", "liar", "response_rules = \"resp.toml\"\n")
    );
    let proxy = Proxy::start(dir, &config(&up.url(), "", &more, &routes)).await;
    let b = Bench {
        up,
        proxy,
        client: h1_client(),
    };
    let mut c = Cases::new(
        CLASS,
        "an upstream response that is malformed or lies about its length",
    );
    #[derive(Clone, Copy, Debug)]
    enum Then {
        /// 502 with scrim's JSON error.
        Bad,
        /// 504.
        Timeout,
        /// 502, or the response cut so the client can tell it is incomplete.
        Cut,
        /// A complete 200.
        Whole,
    }
    let cases: Vec<(&str, Then)> = vec![
        ("/lie/garbage", Then::Bad),
        ("/lie/bad-status", Then::Bad),
        ("/lie/http09", Then::Bad),
        ("/lie/nothing", Then::Bad),
        ("/lie/nul-header", Then::Bad),
        ("/lie/negative-length", Then::Bad),
        ("/lie/two-lengths", Then::Bad),
        ("/lie/huge-header", Then::Bad),
        ("/lie/endless-1xx", Then::Timeout),
        ("/lie/short-body", Then::Cut),
        ("/lie/bad-chunk", Then::Cut),
        ("/lie/unfinished-chunks", Then::Cut),
        ("/lie/two-responses", Then::Whole),
        ("/rewritten/short-body", Then::Bad),
        ("/rewritten/bad-chunk", Then::Bad),
        ("/rewritten/unfinished-chunks", Then::Bad),
        ("/rewritten/two-responses", Then::Whole),
        ("/rewritten/good", Then::Whole),
    ];
    for (path, then) in cases {
        c.check(
            path,
            caught(async {
                let raw = raw_post(path, "", GOOD);
                let w = exchange(b.proxy.addr, &raw, false, Duration::from_secs(4)).await;
                let rewritten = path.starts_with("/rewritten/");
                let all = [
                    w.responses
                        .iter()
                        .map(|r| format!("{}\n{}", r.head, String::from_utf8_lossy(&r.body)))
                        .collect::<String>(),
                    String::from_utf8_lossy(&w.rest).into_owned(),
                ]
                .concat();
                if rewritten {
                    assert_no_leak("a rewritten response", &all, RAW);
                }
                match then {
                    Then::Bad => {
                        wire_refused(&w, &[502]);
                        assert!(!w.responses[0].body.is_empty());
                    }
                    Then::Timeout => {
                        wire_refused(&w, &[504]);
                        assert!(!w.responses[0].body.is_empty());
                    }
                    Then::Cut => {
                        if let Some(r) = w.responses.first() {
                            wire_refused(&w, &[502]);
                            assert!(!r.body.is_empty());
                        } else {
                            // Cut: closed before a complete response (nothing
                            // at all, or a head and part of the body).
                            let rest = String::from_utf8_lossy(&w.rest);
                            assert!(
                                rest.is_empty() || rest.starts_with("HTTP/1.1 200"),
                                "{rest}"
                            );
                            assert!(w.closed, "a cut response must close the connection");
                            assert!(
                                !rest.ends_with("0\r\n\r\n"),
                                "a cut chunked response looks complete: {rest}"
                            );
                        }
                    }
                    Then::Whole => {
                        assert_eq!(w.responses.len(), 1, "{w:?}");
                        assert_eq!(w.responses[0].status, 200, "{w:?}");
                        if rewritten {
                            assert!(String::from_utf8_lossy(&w.responses[0].body)
                                .contains("pseudonym.invalid"));
                        }
                    }
                }
                b.still_serves().await;
            })
            .await,
        );
    }
    c.finish();
}

// --- 13. an h2 client that opens streams without end --------------------------------------------

async fn still_serves_h2c(proxy: &Proxy) {
    let reply = send(
        &h2c_client(),
        post(
            &proxy.url("/v1/h2check"),
            "application/json",
            full(r#"{"event":"h2check"}"#),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// While `conn` misbehaves, other clients are served promptly.
async fn others_served(b: &Bench) {
    let start = Instant::now();
    b.still_serves().await;
    still_serves_h2c(&b.proxy).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "others waited {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_without_end() {
    let b = Bench::start("body_timeout_ms = 1500").await;
    let mut c = Cases::new(CLASS, "an h2 client that opens streams without end");
    let partial = br#"{"email":"alice.example@corp.example","name":"Al"#;
    c.check(
        "1,000 streams at once, none ended: the excess refused, then GOAWAY",
        caught(async {
            let since = b.seen();
            let mut conn = H2Conn::open(b.proxy.addr, &[]).await;
            let block = header_block("/v1/e", &[]);
            let mut burst = Vec::new();
            for i in 0..1000u32 {
                let id = 2 * i + 1;
                burst.extend(header_frames(id, &block, false));
                burst.extend(frame(DATA, 0, id, partial));
            }
            conn.send(&burst).await;
            let got = conn
                .wait(Duration::from_secs(1), |g| g.resets(7) >= 700)
                .await;
            let early = got.resets(7);
            let answered_early = got.frames.iter().filter(|f| f.ty == HEADERS).count();
            others_served(&b).await;
            let got = conn
                .wait(Duration::from_secs(8), |g| {
                    g.settled().len() >= 1000 || g.goaway()
                })
                .await;
            let answered = got.frames.iter().filter(|f| f.ty == HEADERS).count();
            // hyper admits 200 concurrent streams: the rest are refused,
            // and h2 ends a connection that keeps opening refused streams.
            assert!(early >= 500, "REFUSED_STREAM resets: {early}");
            assert_eq!(
                answered_early, 0,
                "a stream with an unfinished body was answered early"
            );
            let _ = answered;
            assert!(
                got.settled().len() >= 1000 || got.goaway(),
                "{} of 1000 streams settled",
                got.settled().len()
            );
            b.untouched_since(since + 2);
            others_served(&b).await;
        })
        .await,
    );
    c.check(
        "200 NDJSON streams that never end: cut upstream at the body timeout",
        caught(async {
            let since = b.seen();
            let mut conn = H2Conn::open(b.proxy.addr, &[]).await;
            let block = {
                let mut bl = vec![0x83, 0x86];
                hpack_int(&mut bl, 0, 4, 4);
                hpack_str(&mut bl, "/v1/stream");
                hpack_int(&mut bl, 0, 4, 1);
                hpack_str(&mut bl, "scrim");
                bl.push(0);
                hpack_str(&mut bl, "content-type");
                hpack_str(&mut bl, "application/x-ndjson");
                bl
            };
            let mut burst = Vec::new();
            for i in 0..200u32 {
                let id = 2 * i + 1;
                burst.extend(header_frames(id, &block, false));
                burst.extend(frame(DATA, 0, id, partial));
            }
            conn.send(&burst).await;
            others_served(&b).await;
            let got = conn
                .wait(Duration::from_secs(8), |g| g.settled().len() >= 200)
                .await;
            assert!(
                got.settled().len() >= 200,
                "{} of 200 settled",
                got.settled().len()
            );
            // The upstream learns of each cut a moment after the client.
            let streams = || -> Vec<_> {
                b.up.requests()[since..]
                    .iter()
                    .filter(|r| r.path_and_query == "/v1/stream")
                    .cloned()
                    .collect()
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while streams().iter().any(|r| !r.aborted && !r.complete)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let streamed = streams();
            // The streams were opened upstream (NDJSON streams through) and
            // cut there, never completed.
            assert!(!streamed.is_empty(), "no stream reached the upstream");
            for r in &streamed {
                assert!(!r.complete, "a stream that never ended completed upstream");
                assert!(r.aborted, "a stream was left open upstream");
                assert!(
                    r.body.is_empty(),
                    "a partial line left: {:?}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            b.upstream_clean();
            others_served(&b).await;
        })
        .await,
    );
    c.check(
        "rapid reset: 5,000 streams opened and cancelled",
        caught(async {
            let since = b.seen();
            let mut conn = H2Conn::open(b.proxy.addr, &[]).await;
            let block = header_block("/v1/e", &[]);
            let mut burst = Vec::new();
            for i in 0..5000u32 {
                let id = 2 * i + 1;
                burst.extend(header_frames(id, &block, false));
                burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
            }
            conn.send(&burst).await;
            others_served(&b).await;
            b.untouched_since(since + 2);
        })
        .await,
    );
    c.check(
        "CONTINUATION flood: one header block without end",
        caught(async {
            let since = b.seen();
            let mut conn = H2Conn::open(b.proxy.addr, &[]).await;
            conn.send(&frame(HEADERS, 0, 1, &header_block("/v1/e", &[])))
                .await;
            let mut lit = Vec::new();
            lit.push(0);
            hpack_str(&mut lit, "x-pad");
            hpack_str(&mut lit, &"a".repeat(1000));
            for _ in 0..10_000 {
                conn.send(&frame(CONTINUATION, 0, 1, &lit)).await;
                if conn.got.lock().unwrap().closed {
                    break;
                }
            }
            let got = conn
                .wait(Duration::from_secs(3), |g| g.goaway() || g.closed)
                .await;
            assert!(
                got.goaway() || got.closed,
                "the flood was not cut: {} frames back",
                got.frames.len()
            );
            others_served(&b).await;
            b.untouched_since(since + 2);
        })
        .await,
    );
    c.check(
        "200 answered streams behind a zero flow-control window",
        caught(async {
            // SETTINGS_INITIAL_WINDOW_SIZE = 0: scrim can send no DATA back.
            let mut conn = H2Conn::open(b.proxy.addr, &[0, 4, 0, 0, 0, 0]).await;
            let block = header_block("/v1/e", &[]);
            let mut burst = Vec::new();
            for i in 0..200u32 {
                let id = 2 * i + 1;
                burst.extend(header_frames(id, &block, false));
                burst.extend(frame(DATA, END_STREAM, id, GOOD.as_bytes()));
            }
            conn.send(&burst).await;
            let got = conn
                .wait(Duration::from_secs(5), |g| g.settled().len() >= 200)
                .await;
            // Response heads need no window: every stream is answered (or
            // refused), none left hanging; their bodies wait for a window
            // that never opens, and that costs the other clients nothing.
            let settled = got.settled();
            assert_eq!(
                settled.len(),
                200,
                "{} of 200 streams settled",
                settled.len()
            );
            let answered = settled.iter().filter(|&&id| !got.no_success(id)).count();
            assert!(answered > 0, "no stream answered 200");
            others_served(&b).await;
            drop(conn);
            others_served(&b).await;
        })
        .await,
    );
    c.finish();
}

// --- 14, 15. property tests: mutated requests on the wire, mutated JSON in the engine ----------

fn prop_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Mutations of a valid input: (operation, position, byte).
fn mutations() -> impl proptest::strategy::Strategy<Value = Vec<(u8, usize, u8)>> {
    use proptest::prelude::*;
    prop::collection::vec((0u8..8, any::<usize>(), any::<u8>()), 1..4)
}

fn mutate(base: &[u8], muts: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(op, pos, byte) in muts {
        if v.is_empty() {
            break;
        }
        let at = pos % v.len();
        match op {
            0 => v[at] ^= byte | 1,
            1 => v.truncate(at),
            2 => v.insert(at, b'\r'),
            3 => v.insert(at, b'\n'),
            4 => v.insert(at, 0),
            5 => {
                // Duplicate the line that holds `at`.
                let start = v[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let end = v[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(v.len(), |p| at + p + 1);
                let line = v[start..end].to_vec();
                v.splice(end..end, line);
            }
            6 => {
                v.remove(at);
            }
            _ => v.insert(at, byte),
        }
    }
    v
}

static PROP_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts panics on scrim's threads in the property runtime (named
/// `hostile-prop`): a panic in a connection task would otherwise vanish.
fn count_server_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("hostile-prop"))
            {
                PROP_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            prev(info)
        }));
    });
}

#[test]
fn property_mutated_raw_http1_requests() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    count_server_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hostile-prop")
        .enable_all()
        .build()
        .unwrap();
    let b = rt.block_on(Bench::start(
        "header_timeout_ms = 500\nbody_timeout_ms = 500",
    ));
    let base = format!(
        "POST /v1/e?utm=x HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\n\
         X-User-Email: alice.example@corp.example\r\nCookie: session=sess-raw-4711; other=bob.raw@corp.example\r\n\
         Content-Length: {}\r\n\r\n{GOOD}",
        GOOD.len()
    )
    .into_bytes();
    let budget = Duration::from_secs(25);
    let started = Instant::now();
    let ran = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: prop_cases(),
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let result = runner.run(&mutations(), |muts| {
        if started.elapsed() > budget {
            return Ok(());
        }
        ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bytes = mutate(&base, &muts);
        rt.block_on(caught(async {
            let w = exchange(b.proxy.addr, &bytes, true, Duration::from_secs(3)).await;
            assert!(w.closed, "scrim neither answered nor closed: {w:?}");
            for r in &w.responses {
                assert!((100..600).contains(&r.status), "status {}", r.status);
                assert_no_leak("a response", &String::from_utf8_lossy(&r.body), RAW);
            }
            let rest = String::from_utf8_lossy(&w.rest);
            assert!(
                rest.is_empty() || rest.starts_with("HTTP/1.1 "),
                "not a response: {rest:?}"
            );
            assert_eq!(
                PROP_PANICS.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "scrim panicked"
            );
            b.still_serves().await;
        }))
        .map_err(|e| {
            TestCaseError::fail(format!("{e}\ninput: {:?}", String::from_utf8_lossy(&bytes)))
        })
    });
    let ran = ran.into_inner();
    super::record(
        CLASS,
        "property: mutated raw HTTP/1.1 requests (flips, cuts, CR/LF/NUL, repeated lines)",
        ran,
        if result.is_ok() {
            ran
        } else {
            ran.saturating_sub(1)
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(ran > 0);
}

#[test]
fn property_mutated_json_through_the_engine() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use scrim::engine::Format;
    let engine = engine(&rules());
    let base = r#"{"event":"joined","email":"alice.example@corp.example","user":{"name":"Alice Example","email":"bob.raw@corp.example"},"list":[{"email":"bob.raw@corp.example"},1e3,null,true]}"#;

    let ran = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: prop_cases() * 4,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&mutations(), |muts| {
        ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bytes = mutate(base.as_bytes(), &muts);
        for format in [Format::Json, Format::Ndjson] {
            let mut out = Vec::new();
            if engine.transform(format, &bytes, &mut out).is_ok() {
                let text = String::from_utf8_lossy(&out).to_lowercase();
                for raw in RAW {
                    if text.contains(raw) {
                        return Err(TestCaseError::fail(format!("{raw} left in {text}")));
                    }
                }
                if format == Format::Json {
                    serde_json::from_slice::<serde_json::Value>(&out)
                        .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
                }
            }
        }
        Ok(())
    });
    let ran = ran.into_inner();
    super::record(
        CLASS,
        "property: mutated JSON documents through the engine",
        ran,
        if result.is_ok() {
            ran
        } else {
            ran.saturating_sub(1)
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
